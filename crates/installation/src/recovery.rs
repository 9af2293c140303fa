//! Start-up recovery, before serving: an installation still INSTALLING never reached its
//! atomic commit (the store rolled back any part of one a crash interrupted), so it is
//! marked FAILED and the environment holds none of it.
use promotion_core::records::InstallationStatus;
use promotion_store::installation::Record;
use promotion_store::StoreError;

use crate::install::mark_failed;
use crate::state::State;

pub const INTERRUPTED: &str =
    "interrupted: the installation service stopped before the installation was complete; nothing of it remains";

pub async fn recover(state: &State) -> Result<usize, StoreError> {
    let stuck = state.store.unfinished_installations().await?;
    let n = stuck.len();
    for mut r in stuck {
        match r.status {
            // Written by an earlier version that rolled back in several steps: the store
            // put back whatever part of it was applied, so it is still installed.
            InstallationStatus::RollingBack => {
                r.status = InstallationStatus::Installed;
                r.rollback_time = None;
                r.rolled_back_by.clear();
                state
                    .store
                    .append(vec![Record::Installation { record: Box::new(r), with_plan: false, undo: None }])
                    .await?;
            }
            _ => mark_failed(state, &mut r, INTERRUPTED).await,
        }
    }
    Ok(n)
}
