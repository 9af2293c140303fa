//! `promotion.v1.PromotionService`: promotion requests and approval tasks.
use std::sync::Arc;

use crate::installation::state::State;
use crate::proto::v1 as pb;

pub struct PromotionApi {
    #[allow(dead_code)]
    state: Arc<State>,
}

impl PromotionApi {
    pub fn new(state: Arc<State>) -> Self {
        PromotionApi { state }
    }
}

#[tonic::async_trait]
impl pb::promotion_service_server::PromotionService for PromotionApi {}
