//! Optimistic concurrency of PutObjects: a put that names the revision each object was read
//! at is refused ABORTED `REVISION_MISMATCH` when any of them changed or went away since,
//! and writes nothing; of two writers that read the same revision, exactly one wins.
mod common;

use std::collections::HashMap;

use common::*;
use promotion_api::v1 as pb;
use tonic::Code;

fn group(id: &str, name: &str, description: &str) -> pb::ConfigObject {
    let fields =
        promotion_api::convert::map_to_struct(serde_json::json!({ "description": description }).as_object().unwrap());
    pb::ConfigObject {
        obj_code: "GROUP".into(),
        id: id.into(),
        name: name.into(),
        fields: Some(fields),
        ..Default::default()
    }
}

fn put(objects: Vec<pb::ConfigObject>, expected: &[(&str, u64)]) -> pb::PutObjectsRequest {
    pb::PutObjectsRequest {
        environment: "dev".into(),
        objects,
        request_id: String::new(),
        expected_revisions: expected.iter().map(|(id, r)| (id.to_string(), *r)).collect::<HashMap<_, _>>(),
    }
}

fn description(o: &pb::ConfigObject) -> serde_json::Value {
    promotion_api::convert::struct_to_map(o.fields.as_ref().unwrap())["description"].clone()
}

#[tokio::test]
async fn a_stale_put_is_aborted_and_writes_nothing() {
    let dev = DevServices::start().await;
    let mut erin = dev.clients("erin").await;
    let id = "a0000000000000000000000000000001";
    let created =
        erin.environments.put_objects(put(vec![group(id, "Partners", "v1")], &[])).await.unwrap().into_inner();
    let read_at = created.objects[0].revision;
    assert!(read_at > 0);

    // The first writer read revision `read_at` and wins.
    let second = erin
        .environments
        .put_objects(put(vec![group(id, "Partners", "v2")], &[(id, read_at)]))
        .await
        .unwrap()
        .into_inner();
    assert!(second.objects[0].revision > read_at);

    // The second one read the same revision: refused, nothing written.
    let env_before = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await.unwrap();
    let other = "a0000000000000000000000000000002";
    let stale = erin
        .environments
        .put_objects(put(vec![group(id, "Partners", "stale"), group(other, "Other", "new")], &[(id, read_at)]))
        .await;
    let status = assert_status(stale, Code::Aborted, "REVISION_MISMATCH");
    assert_eq!(metadata_of(&status)["objects"], format!("GROUP:{id}"));
    assert!(status.message().contains("nothing was written"), "{status:?}");
    let get = |id: &str| pb::GetObjectRequest { environment: "dev".into(), obj_code: "GROUP".into(), id: id.into() };
    let now = erin.environments.get_object(get(id)).await.unwrap().into_inner();
    assert_eq!(description(&now), "v2");
    assert_status(erin.environments.get_object(get(other)).await, Code::NotFound, "OBJECT_NOT_FOUND");
    let env_after = erin.environments.get_environment(pb::GetEnvironmentRequest { id: "dev".into() }).await.unwrap();
    assert_eq!(env_after.into_inner().revision, env_before.into_inner().revision, "no revision was spent");

    // The current revision passes; 0 means no check.
    let current = now.revision;
    erin.environments.put_objects(put(vec![group(id, "Partners", "v3")], &[(id, current)])).await.unwrap();
    erin.environments.put_objects(put(vec![group(id, "Partners", "v4")], &[(id, 0)])).await.unwrap();

    // An object expected to exist that was deleted since is stale too.
    let latest = erin.environments.get_object(get(id)).await.unwrap().into_inner().revision;
    erin.environments
        .delete_object(pb::DeleteObjectRequest {
            environment: "dev".into(),
            obj_code: "GROUP".into(),
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = erin.environments.put_objects(put(vec![group(id, "Partners", "again")], &[(id, latest)])).await;
    let status = assert_status(gone, Code::Aborted, "REVISION_MISMATCH");
    assert!(status.message().contains("deleted"), "{status:?}");
    assert_status(erin.environments.get_object(get(id)).await, Code::NotFound, "OBJECT_NOT_FOUND");

    // An expectation must be about an object of the call.
    let unrelated = erin.environments.put_objects(put(vec![group(other, "Other", "x")], &[(id, 3)])).await;
    assert_status(unrelated, Code::InvalidArgument, "INVALID_EXPECTED_REVISION");
}

#[tokio::test]
async fn of_two_writers_that_read_the_same_revision_exactly_one_wins() {
    let dev = DevServices::start().await;
    let erin = dev.clients("erin").await;
    let id = "b0000000000000000000000000000001";
    let mut client = erin.environments.clone();
    let read_at =
        client.put_objects(put(vec![group(id, "Race", "start")], &[])).await.unwrap().into_inner().objects[0].revision;
    let writers = (0..8).map(|n| {
        let mut client = erin.environments.clone();
        tokio::spawn(async move {
            client.put_objects(put(vec![group(id, "Race", &format!("writer {n}"))], &[(id, read_at)])).await
        })
    });
    let mut won = 0;
    for writer in writers.collect::<Vec<_>>() {
        match writer.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(reason_of(&status).as_deref(), Some("REVISION_MISMATCH"));
            }
        }
    }
    assert_eq!(won, 1, "exactly one of the writers that read revision {read_at} may win");
}
