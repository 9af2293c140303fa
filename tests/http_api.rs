//! Seed 001's JSON API on development mode's HTTP address, as curl would call it: the
//! seed's own CreatePackage body, answers in the seed's shape, errors as JSON with the
//! gRPC reason and a natural HTTP status, and the promotion story over HTTP alone.
mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{http_call, DevServices, HttpAnswer};

const API: &str = "/environment-promotion/v1";

/// The seed's "Create a package" body, with `source` naming the environment.
const SEED_CREATE_BODY: &str = r#"{
    "packageName": "Agency Onboarding - 2023-06-06",
    "description": "This promotion package contains configuration to support the agency onboarding processes...",
    "source": "dev",
    "objectCollections": [
        {
            "objCode": "PROJ",
            "entities": [
                {
                    "ID": "6419b8b9001151ee258921a4f7597ba1",
                    "name": "Agency Request"
                }
            ]
        },
        {
            "objCode": "TMPL",
            "entities": [
                {
                    "ID": "6419b8b9001151ee258921a4f7597bb2",
                    "name": "New Agency Onboarding"
                },
                {
                    "ID": "6419b8b9001151ee258921a4f7597bc3",
                    "name": "New Agency Offboarding"
                }
            ]
        },
        {
            "objCode": "PTLTAB",
            "entities": [
                {
                    "ID": "645e6435000b4aaebe4776f4a42ed5ad",
                    "name": "Agency Performance and Readiness"
                }
            ]
        }
    ]
}"#;

struct Api<'a> {
    dev: &'a DevServices,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> HttpAnswer {
        let bearer = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut headers = vec!["Content-Type: application/json"];
        headers.extend(bearer.as_deref());
        http_call(self.dev.http_addr, method, &format!("{API}{path}"), &headers, body).await
    }

    /// The `data` of a 200 answer.
    async fn ok(&self, method: &str, path: &str, token: &str, body: &str) -> Value {
        let answer = self.call(method, path, Some(token), body).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.json()["data"].clone()
    }

    async fn token(&self, client: &str) -> String {
        let body = json!({"clientId": client, "clientSecret": format!("{client}-secret")}).to_string();
        let answer = self.call("POST", "/token", None, &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["data"]["accessToken"].as_str().expect("an access token").to_string()
    }

    /// Polls the package until its extraction has finished.
    async fn extracted(&self, id: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let package = self.ok("GET", &format!("/packages/{id}"), token, "").await;
            if package["status"] != "EXTRACTING" {
                return package;
            }
            assert!(Instant::now() < deadline, "the package stayed EXTRACTING");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn error_of(answer: &HttpAnswer) -> (u16, String, Value) {
    let body = answer.json();
    let error = &body["error"];
    assert!(error["code"].is_string() && error["message"].is_string(), "{}", answer.body);
    (answer.status, error["reason"].as_str().unwrap_or_default().to_string(), error["details"].clone())
}

#[tokio::test]
async fn the_seeds_create_body_answers_extracting_then_building_and_is_listed() {
    let dev = DevServices::start().await;
    let api = Api { dev: &dev };
    let alice = api.token("alice").await;

    let created = api.ok("POST", "/packages", &alice, SEED_CREATE_BODY).await;
    assert_eq!(created["status"], "EXTRACTING", "{created}");
    assert_eq!(created["name"], "Agency Onboarding - 2023-06-06");
    assert_eq!(created["version"], 1);
    assert_eq!(created["installationCounts"], json!({}));
    assert_eq!(created["publishedAt"], Value::Null);
    assert_eq!(created["isPrivate"], false);
    assert_eq!(created["customerId"], "acme");
    assert_eq!(created["createdById"], "alice");
    assert!(created["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
    let id = created["id"].as_str().unwrap();

    let built = api.extracted(id, &alice).await;
    assert_eq!(built["status"], "BUILDING", "{built}");
    assert_eq!(built["entityCounts"]["TMPL"], 2, "{built}");

    let listed = api.ok("GET", "/packages", &alice, "").await;
    let ids: Vec<&str> = listed.as_array().expect("data is the list").iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains(&id), "{listed}");
    let filtered = api.ok("GET", "/packages?status=PREVIEW", &alice, "").await;
    assert_eq!(filtered, json!([]), "a BUILDING package is not PREVIEW");

    let definition = api.ok("GET", &format!("/packages/{id}/definition"), &alice, "").await;
    let templates = definition["objects"].as_array().unwrap().iter().filter(|o| o["objCode"] == "TMPL").count();
    assert_eq!(templates, 2, "{definition}");
    assert_eq!(definition["version"], 1);
}

#[tokio::test]
async fn bad_requests_get_the_grpc_reason_and_a_4xx_and_no_token_gets_401() {
    let dev = DevServices::start().await;
    let api = Api { dev: &dev };
    let alice = api.token("alice").await;

    let short_name = SEED_CREATE_BODY.replace("Agency Onboarding - 2023-06-06", "Ag");
    let (status, reason, details) = error_of(&api.call("POST", "/packages", Some(&alice), &short_name).await);
    assert_eq!((status, reason.as_str()), (400, "INVALID_NAME"));
    assert_eq!(details["field"], "name");

    let not_a_root = SEED_CREATE_BODY.replace("\"PROJ\"", "\"TASK\"");
    let (status, reason, _) = error_of(&api.call("POST", "/packages", Some(&alice), &not_a_root).await);
    assert_eq!((status, reason.as_str()), (400, "NOT_A_ROOT_TYPE"));

    let (status, reason, _) = error_of(&api.call("POST", "/packages", Some(&alice), "{\"packageName\": ").await);
    assert_eq!((status, reason.as_str()), (400, "MALFORMED_MESSAGE"));
    let (status, reason, _) = error_of(&api.call("POST", "/packages", Some(&alice), "{\"colour\": \"red\"}").await);
    assert_eq!((status, reason.as_str()), (400, "MALFORMED_MESSAGE"));

    let elsewhere = SEED_CREATE_BODY.replace("\"source\": \"dev\"", "\"source\": \"globex-dev\"");
    let (status, reason, _) = error_of(&api.call("POST", "/packages", Some(&alice), &elsewhere).await);
    assert_eq!((status, reason.as_str()), (404, "ENVIRONMENT_NOT_FOUND"), "another organization's environment");

    let bob = api.token("bob").await;
    let (status, reason, _) = error_of(&api.call("POST", "/packages", Some(&bob), SEED_CREATE_BODY).await);
    assert_eq!((status, reason.as_str()), (403, "PERMISSION_DENIED"), "bob publishes nothing in dev");

    let anonymous = api.call("GET", "/packages", None, "").await;
    let (status, reason, _) = error_of(&anonymous);
    assert_eq!((status, reason.as_str()), (401, "TOKEN_MISSING"));
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let forged = api.call("GET", "/packages", Some("not.a.token"), "").await;
    assert_eq!(error_of(&forged).0, 401);

    let wrong_secret = json!({"clientId": "alice", "clientSecret": "guess"}).to_string();
    let (status, reason, _) = error_of(&api.call("POST", "/token", None, &wrong_secret).await);
    assert_eq!((status, reason.as_str()), (401, "INVALID_CLIENT"));

    let (status, reason, _) = error_of(&api.call("GET", "/nothing-here", Some(&alice), "").await);
    assert_eq!((status, reason.as_str()), (404, "ENDPOINT_NOT_FOUND"));
    let missing = api.call("GET", "/packages/01a23186-a61c-70a8-9db2-c02944b2e0d6", Some(&alice), "").await;
    assert_eq!(error_of(&missing).0, 404);

    // Plain HTTP to a gRPC port is told where the HTTP API is, in HTTP/1.1.
    for grpc_port in [dev.package_addr, dev.installation_addr] {
        let lost = http_call(grpc_port, "GET", "/environment-promotion/v1/packages", &[], "").await;
        assert_eq!(lost.status, 400, "{lost:?}");
        assert!(lost.body.contains("gRPC port") && lost.body.contains("http_listen"), "{}", lost.body);
    }
}

#[tokio::test]
async fn a_promotion_goes_through_over_http_alone() {
    let dev = DevServices::start().await;
    let api = Api { dev: &dev };
    let (alice, bob) = (api.token("alice").await, api.token("bob").await);
    let body = json!({
        "packageName": "Agency onboarding template",
        "source": "dev",
        "objectCollections": [{"objCode": "TMPL", "entities": [{"ID": "6419b8b9001151ee258921a4f7597bb2"}]}]
    });
    let created = api.ok("POST", "/packages", &alice, &body.to_string()).await;
    let id = created["id"].as_str().unwrap().to_string();
    let etag = api.extracted(&id, &alice).await["etag"].as_str().unwrap().to_string();

    // PATCH takes the changed fields; a stale If-Match is refused with 412.
    let stale = http_call(
        dev.http_addr,
        "PATCH",
        &format!("{API}/packages/{id}"),
        &[&format!("Authorization: Bearer {alice}"), "If-Match: \"stale\""],
        r#"{"status": "PREVIEW"}"#,
    )
    .await;
    let (status, reason, _) = error_of(&stale);
    assert_eq!((status, reason.as_str()), (412, "ETAG_MISMATCH"));
    let patch = json!({"status": "PREVIEW", "etag": etag}).to_string();
    let preview = api.ok("PATCH", &format!("/packages/{id}"), &alice, &patch).await;
    assert_eq!(preview["status"], "PREVIEW");

    // bob plans it into qa: the seed's translation map, objCode -> source id -> entry.
    let plan = api.ok("POST", &format!("/packages/{id}/prerun"), &bob, r#"{"destinationEnvironment": "qa"}"#).await;
    assert_eq!(plan["status"], "READY", "{plan}");
    assert_eq!(plan["translationMap"]["TMPL"]["6419b8b9001151ee258921a4f7597bb2"]["action"], "CREATE", "{plan}");

    // alice asks for qa; a second request for the same target is refused until decided.
    let request = json!({"packageId": id, "targetEnvironment": "qa", "comment": "ready for QA"}).to_string();
    let requested = api.ok("POST", "/promotion-requests", &alice, &request).await;
    assert_eq!(requested["status"], "TO_BE_VALIDATED", "{requested}");
    let again = api.call("POST", "/promotion-requests", Some(&alice), &request).await;
    let (status, reason, _) = error_of(&again);
    assert_eq!((status, reason.as_str()), (409, "PROMOTION_ALREADY_IN_PROGRESS"));

    // bob sees it in his tasks and accepts it: the package is installed into qa.
    let tasks = api.ok("GET", "/tasks", &bob, "").await;
    let request_id = requested["id"].as_str().unwrap();
    assert!(tasks.as_array().unwrap().iter().any(|t| t["id"] == request_id), "{tasks}");
    let accept = json!({"comment": "looks good"}).to_string();
    let accepted = api.ok("POST", &format!("/promotion-requests/{request_id}/accept"), &bob, &accept).await;
    assert_eq!(accepted["status"], "ACCEPTED", "{accepted}");
    let installation_id = accepted["installationId"].as_str().unwrap();
    let installation = api.ok("GET", &format!("/installations/{installation_id}"), &bob, "").await;
    assert_eq!(installation["status"], "INSTALLED", "{installation}");
    let installations = api.ok("GET", &format!("/packages/{id}/installations"), &bob, "").await;
    assert_eq!(installations.as_array().unwrap().len(), 1, "{installations}");
    assert_eq!(api.ok("GET", "/tasks", &bob, "").await, json!([]), "the task is gone");

    // The trail has it, for the admin.
    let admin = api.token("admin").await;
    let events = api.ok("GET", "/audit-events?environment=qa", &admin, "").await;
    let actions: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"PROMOTION_ACCEPTED") && actions.contains(&"PROMOTION_REQUESTED"), "{actions:?}");
}
