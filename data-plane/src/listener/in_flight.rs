//! The bound on requests served at once: a slot is taken when a request arrives and held
//! until its response body (a stream included) has been sent or dropped. Without a free
//! slot the request is answered `529 overloaded_error` at once, with `retry-after`.

use std::sync::Arc;

use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorCode};
use crate::gateway::ResponseBody;
use crate::upstream::headers::REQUEST_ID;
use uuid::Uuid;

/// Seconds a client refused for overload is told to wait.
const OVERLOADED_RETRY_AFTER_S: u64 = 2;

/// Slots for requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    slots: Arc<Semaphore>,
}

/// A request's slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(#[allow(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// A slot, or `None` when every one is taken.
    pub(crate) fn try_admit(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(Slot)
    }
}

/// The answer when no slot is free (with a `request-id`, like every answer).
pub(crate) fn overloaded() -> Response<ResponseBody> {
    let mut response = ApiError {
        retry_after: Some(OVERLOADED_RETRY_AFTER_S),
        ..ApiError::new(
            ErrorCode::Overloaded,
            "the gateway is serving as many requests as it can; retry shortly",
        )
    }
    .into_response();
    if let Ok(id) = HeaderValue::from_str(&Uuid::now_v7().to_string()) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

/// `response` with `held` (a [`Slot`], …) kept until its body has been sent (or dropped).
pub(crate) fn hold<T: Send + 'static>(
    response: Response<ResponseBody>,
    held: T,
) -> Response<ResponseBody> {
    response.map(|body| {
        body.map_frame(move |frame| {
            let _held = &held;
            frame
        })
        .boxed_unsync()
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::gateway::full_body;

    #[tokio::test]
    async fn a_slot_is_held_until_the_response_body_is_done() {
        let in_flight = InFlight::new(1);
        let slot = in_flight.try_admit().unwrap();
        assert!(in_flight.try_admit().is_none());
        let response = hold(Response::new(full_body("hi".into())), slot);
        assert!(in_flight.try_admit().is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hi");
        assert!(in_flight.try_admit().is_some());
    }

    #[test]
    fn overload_is_529_with_retry_after() {
        let response = overloaded();
        assert_eq!(response.status().as_u16(), 529);
        assert_eq!(response.headers()["retry-after"], "2");
        assert!(response.headers().contains_key("request-id"));
    }
}
