//! `promotion.v1.PackageService`: packages, their versions and their lifecycle.
use std::sync::Arc;

use crate::package::state::State;
use crate::proto::v1 as pb;

pub struct PackageApi {
    #[allow(dead_code)]
    state: Arc<State>,
}

impl PackageApi {
    pub fn new(state: Arc<State>) -> Self {
        PackageApi { state }
    }
}

#[tonic::async_trait]
impl pb::package_service_server::PackageService for PackageApi {}
