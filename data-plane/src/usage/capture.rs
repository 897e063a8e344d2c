//! Content capture: a request's prompt and the answer relayed to the client, written to the
//! `tollgate::content` log target when the request ends — only while the snapshot's
//! `content_capture` is on (an audited admin setting, off by default). Off, nothing is kept.

use bytes::{Bytes, BytesMut};

/// Each captured body is cut at this many bytes.
pub(crate) const CAPTURE_MAX_BYTES: usize = 64 * 1024;

/// The bodies of one request, bounded.
pub(crate) struct Capture {
    request: Bytes,
    response: BytesMut,
    response_total: usize,
}

/// Sizes only: content reaches the `tollgate::content` target and nowhere else.
impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("request_bytes", &self.request.len())
            .field("response_bytes", &self.response_total)
            .finish()
    }
}

impl Capture {
    /// `request` is the body as the client sent it (a cheap reference-counted clone).
    pub(crate) fn new(request: Bytes) -> Self {
        Capture {
            request,
            response: BytesMut::new(),
            response_total: 0,
        }
    }

    /// Notes bytes relayed to the client.
    pub(crate) fn relayed(&mut self, data: &[u8]) {
        self.response_total = self.response_total.saturating_add(data.len());
        let room = CAPTURE_MAX_BYTES.saturating_sub(self.response.len());
        if room > 0 {
            let take = data.len().min(room);
            self.response.extend_from_slice(&data[..take]);
        }
    }

    /// Writes the capture log line.
    pub(crate) fn emit(&self, request_id: &str, email: &str, model: &str) {
        let (request_body, request_truncated) = bounded_text(&self.request, self.request.len());
        let (response_body, response_truncated) = bounded_text(&self.response, self.response_total);
        tracing::info!(
            target: "tollgate::content",
            request_id = %request_id,
            user.email = %email,
            model = %model,
            request_body = %request_body,
            request_body_bytes = self.request.len(),
            request_body_truncated = request_truncated,
            response_body = %response_body,
            response_body_bytes = self.response_total,
            response_body_truncated = response_truncated,
            "content"
        );
    }
}

/// At most [`CAPTURE_MAX_BYTES`] of `bytes` as text (UTF-8, invalid sequences replaced; a
/// character cut by the bound is dropped), and whether it was cut (`total` > bound).
fn bounded_text(bytes: &[u8], total: usize) -> (std::borrow::Cow<'_, str>, bool) {
    let cut = bytes.len() > CAPTURE_MAX_BYTES || total > bytes.len();
    let mut slice = bytes.get(..CAPTURE_MAX_BYTES).unwrap_or(bytes);
    if cut
        && let Err(e) = std::str::from_utf8(slice)
        && e.error_len().is_none()
    {
        slice = &slice[..e.valid_up_to()];
    }
    (String::from_utf8_lossy(slice), cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_at_the_bound_on_a_character_boundary() {
        let mut long = "a".repeat(CAPTURE_MAX_BYTES - 1);
        long.push('é'); // two bytes, straddling the bound
        long.push_str("tail");
        let mut capture = Capture::new(Bytes::from(long.clone()));
        capture.relayed(long.as_bytes());
        let (text, cut) = bounded_text(&capture.request, capture.request.len());
        assert!(cut);
        assert_eq!(text.len(), CAPTURE_MAX_BYTES - 1);
        assert!(!text.contains('\u{fffd}'));
        assert_eq!(capture.response.len(), CAPTURE_MAX_BYTES);
        let (text, cut) = bounded_text(&capture.response, capture.response_total);
        assert!(cut);
        assert_eq!(text.len(), CAPTURE_MAX_BYTES - 1);
    }

    #[test]
    fn short_bodies_are_whole() {
        let mut capture = Capture::new(Bytes::from_static(b"{\"model\":\"m\"}"));
        capture.relayed(b"event: a\n\n");
        capture.relayed(b"event: b\n\n");
        assert_eq!(
            bounded_text(&capture.response, capture.response_total),
            ("event: a\n\nevent: b\n\n".into(), false)
        );
        assert!(!bounded_text(&capture.request, capture.request.len()).1);
    }
}
