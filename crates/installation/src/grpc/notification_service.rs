//! `promotion.v1.NotificationService`: webhook subscriptions and their deliveries.
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{check_request_id, next_page_token, page_request, require_uuid};
use crate::notifications::{self, NewSubscription};
use crate::state::State;
use promotion_api::convert::timestamp;
use promotion_api::v1 as pb;
use promotion_core::cursor::Scope;
use promotion_core::notify::{Delivery, DeliveryStatus, Subscription};
use promotion_serving::caller;

pub struct NotificationApi {
    state: Arc<State>,
}

impl NotificationApi {
    pub fn new(state: Arc<State>) -> Self {
        NotificationApi { state }
    }
}

fn subscription_to_proto(s: &Subscription) -> pb::Subscription {
    pb::Subscription {
        id: s.id.clone(),
        url: s.url.clone(),
        events: s.events.clone(),
        environment: s.environment.clone(),
        create_time: Some(timestamp(s.create_time)),
        created_by: s.created_by.clone(),
    }
}

fn delivery_to_proto(d: &Delivery) -> pb::Delivery {
    let status = match d.status {
        DeliveryStatus::Pending => pb::DeliveryStatus::Pending,
        DeliveryStatus::Delivered => pb::DeliveryStatus::Delivered,
        DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
    };
    pb::Delivery {
        id: d.id.clone(),
        subscription_id: d.subscription_id.clone(),
        event: d.event.clone(),
        environment: d.environment.clone(),
        status: status as i32,
        attempts: d
            .attempts
            .iter()
            .map(|a| pb::DeliveryAttempt {
                time: Some(timestamp(a.time)),
                status_code: i32::from(a.status_code),
                latency_ms: i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
                error: a.error.clone(),
            })
            .collect(),
        next_attempt_time: (d.status == DeliveryStatus::Pending).then(|| timestamp(d.next_attempt)),
        create_time: Some(timestamp(d.create_time)),
        body: d.body.clone(),
    }
}

impl TryFrom<pb::CreateSubscriptionRequest> for NewSubscription {
    type Error = Status;

    fn try_from(r: pb::CreateSubscriptionRequest) -> Result<Self, Status> {
        check_request_id(&r.request_id)?;
        Ok(NewSubscription {
            url: r.url,
            events: r.events,
            secret: r.secret,
            environment: r.environment,
            request_id: r.request_id,
        })
    }
}

#[tonic::async_trait]
impl pb::notification_service_server::NotificationService for NotificationApi {
    async fn create_subscription(
        &self,
        req: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let caller = caller(&req)?;
        let command = NewSubscription::try_from(req.into_inner())?;
        let s = notifications::create(&self.state, &caller, command).await?;
        Ok(Response::new(subscription_to_proto(&s)))
    }

    async fn list_subscriptions(
        &self,
        req: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = caller(&req)?;
        let found = notifications::list(&self.state, &caller).await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: found.iter().map(subscription_to_proto).collect(),
        }))
    }

    async fn delete_subscription(
        &self,
        req: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        require_uuid("id", &r.id)?;
        check_request_id(&r.request_id)?;
        notifications::delete(&self.state, &caller, &r.id, &r.request_id).await?;
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        if !r.subscription_id.is_empty() {
            require_uuid("subscription_id", &r.subscription_id)?;
        }
        let scope = Scope::new("ListDeliveries", &caller.organization).filter(&r.subscription_id);
        let page = page_request(&self.state, &scope, r.page_size, &r.page_token).await?;
        let found =
            notifications::deliveries(&self.state, &caller, &r.subscription_id, &page).await.map_err(|e| match e {
                crate::error::InstallError::Store(s) => super::list_failure(s, &page),
                e => e.into(),
            })?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: found.items.iter().map(delivery_to_proto).collect(),
            next_page_token: next_page_token(&self.state, &scope, found.next.as_ref()).await?,
        }))
    }
}
