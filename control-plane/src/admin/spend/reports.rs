//! Spend reports: cost by user / group / key / model / provider / day over any range.

use tollgate_proto::v1 as pb;
use tonic::Status;

use super::SpendAdminService;

pub(super) async fn spend_report(
    _svc: &SpendAdminService,
    _req: pb::SpendReportRequest,
) -> Result<pb::SpendReportResponse, Status> {
    Err(Status::unimplemented("spend reports are not served yet"))
}
