//! Development-mode demo data: the configuration objects each demo environment starts with.
use serde_json::{json, Map, Value};

use crate::shared::objects::{ConfigObject, ObjectKey, Reference};

/// Seed 001's example roots, kept with their ids so its requests work verbatim in `dev`.
pub const AGENCY_REQUEST_PROJ_ID: &str = "6419b8b9001151ee258921a4f7597ba1";
pub const AGENCY_ONBOARDING_TMPL_ID: &str = "6419b8b9001151ee258921a4f7597bb2";
pub const AGENCY_OFFBOARDING_TMPL_ID: &str = "6419b8b9001151ee258921a4f7597bc3";
pub const AGENCY_PERFORMANCE_PTLTAB_ID: &str = "645e6435000b4aaebe4776f4a42ed5ad";

/// Demo configuration for one development-mode environment (empty for environments without seed data).
pub fn demo_objects(environment: &str) -> Vec<ConfigObject> {
    match environment {
        "dev" => dev(),
        "qa" => qa(),
        "prod" => prod(),
        "globex-dev" => globex_dev(),
        _ => Vec::new(),
    }
}

/// Groups and roles shared by the acme environments, so copies in `qa` and `prod` match
/// `dev` by name (and mostly by content) under other ids.
const GROUPS: &[(&str, &str)] = &[
    ("Agency Operations", "Runs agency onboarding, offboarding and day-to-day partner operations"),
    ("Creative Services", "Designers and copywriters producing agency campaign assets"),
    ("Account Management", "Owns agency relationships, contracts and renewals"),
    ("Digital Production", "Web, video and interactive production inside Creative Services"),
    ("Finance", "Agency invoicing, rate cards and spend tracking"),
];
const ROLES: &[(&str, &str, f64, f64)] = &[
    ("Project Manager", "Plans and tracks agency work end to end", 145.0, 82.0),
    ("Account Director", "Accountable for the agency relationship and sign-offs", 210.0, 118.0),
    ("Designer", "Visual and brand design", 125.0, 68.0),
    ("Copywriter", "Campaign and brand copy", 115.0, 61.0),
    ("QA Analyst", "Reviews deliverables before go-live", 95.0, 52.0),
];

/// Builds one environment's objects with deterministic ids.
struct Env {
    /// 24 hex characters shared by every generated id of the environment.
    prefix: &'static str,
    next: u32,
    objects: Vec<ConfigObject>,
}

impl Env {
    fn new(prefix: &'static str) -> Self {
        debug_assert_eq!(prefix.len(), 24);
        Self { prefix, next: 0, objects: Vec::new() }
    }

    fn add(&mut self, obj_code: &str, name: &str, fields: Value) -> Draft<'_> {
        self.next += 1;
        // An odd multiplier is a bijection on u32: ids look like GUIDs yet never repeat.
        let id = format!("{}{:08x}", self.prefix, self.next.wrapping_mul(0x9e37_79b1));
        self.objects.push(ConfigObject {
            obj_code: obj_code.into(),
            id,
            name: name.into(),
            fields: match fields {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            parent: None,
            references: Vec::new(),
            revision: 0,
            update_time: None,
        });
        Draft(self.objects.last_mut().expect("just pushed"))
    }

    fn group(&mut self, name: &str) -> Draft<'_> {
        let (_, description) = GROUPS.iter().find(|g| g.0 == name).expect("known demo group");
        self.add("GROUP", name, json!({ "description": description, "is_active": true }))
    }

    fn role(&mut self, name: &str) -> Draft<'_> {
        let (_, description, billing, cost) = ROLES.iter().find(|r| r.0 == name).expect("known demo role");
        self.add(
            "ROLE",
            name,
            json!({ "description": description, "billing_per_hour": billing, "cost_per_hour": cost, "is_active": true }),
        )
    }

    /// A template task (TTSK) or project task (TASK) owned by `parent`.
    fn task(
        &mut self,
        obj_code: &str,
        parent: &ObjectKey,
        number: u32,
        name: &str,
        days: u32,
        hours: f64,
    ) -> Draft<'_> {
        let fields = json!({ "task_number": number, "duration": days, "duration_unit": "D", "planned_hours": hours, "status": "NEW", "priority": 2 });
        self.add(obj_code, name, fields).under(parent)
    }

    /// A task assignment (TASSGN or ASSGN) named after who it assigns.
    fn assignment(&mut self, obj_code: &str, task: &ObjectKey, name: &str, hours: f64) -> Draft<'_> {
        let fields = json!({ "work_required_hours": hours, "allocation_percent": 100, "is_primary": true });
        self.add(obj_code, name, fields).under(task)
    }

    /// A finish-to-start predecessor (TPRED or PRED) of `task`, named after the task it waits for.
    fn depends(&mut self, obj_code: &str, task: &ObjectKey, predecessor: &ObjectKey, lag_days: u32) {
        let waits_for = self.objects.iter().find(|o| o.id == predecessor.id).map_or("", |o| o.name.as_str());
        let name = format!("After {waits_for}");
        self.add(obj_code, &name, json!({ "predecessor_type": "fs", "lag_days": lag_days, "is_enforced": true }))
            .under(task)
            .to("predecessor", predecessor);
    }
}

/// The object just added, for setting its id, parent and references.
struct Draft<'a>(&'a mut ConfigObject);

impl Draft<'_> {
    fn id(self, id: &str) -> Self {
        self.0.id = id.into();
        self
    }

    fn set(self, field: &str, value: Value) -> Self {
        self.0.fields.insert(field.into(), value);
        self
    }

    fn under(self, parent: &ObjectKey) -> Self {
        self.0.parent = Some(parent.clone());
        self
    }

    fn to(self, field: &str, target: &ObjectKey) -> Self {
        self.push_ref(field, target, false)
    }

    /// A reference the object can live without (installs may drop it if unresolved).
    fn maybe(self, field: &str, target: &ObjectKey) -> Self {
        self.push_ref(field, target, true)
    }

    fn push_ref(self, field: &str, target: &ObjectKey, optional: bool) -> Self {
        self.0.references.push(Reference {
            field: field.into(),
            obj_code: target.obj_code.clone(),
            id: target.id.clone(),
            optional,
        });
        self
    }

    fn key(self) -> ObjectKey {
        self.0.key()
    }
}

/// Acme's development environment: seed 001's package roots with everything they use.
fn dev() -> Vec<ConfigObject> {
    let mut s = Env::new("6419b8b9001151ee2589d3e5");

    // Organization.
    let ops = s.group("Agency Operations").key();
    let creative = s.group("Creative Services").key();
    let accounts = s.group("Account Management").key();
    let digital = s.group("Digital Production").under(&creative).key();
    let finance = s.group("Finance").key();
    let [pm, director, designer, copywriter, qa_analyst] =
        ["Project Manager", "Account Director", "Designer", "Copywriter", "QA Analyst"].map(|r| s.role(r).key());
    let onboarding_team = s
        .add(
            "TEAM",
            "Agency Onboarding Team",
            json!({ "description": "Sets up new agencies", "team_type": "STANDARD", "capacity_hours_per_week": 160 }),
        )
        .to("home_group", &ops)
        .key();
    let studio_team = s
        .add("TEAM", "Creative Studio Team", json!({ "description": "Agile studio for campaign assets", "team_type": "AGILE", "sprint_length_days": 14 }))
        .to("home_group", &creative)
        .key();
    let onboarding_hours = s
        .add("HOURT", "Client Onboarding", json!({ "description": "Time spent onboarding a new agency", "scope": "PROJECT", "is_billable": true, "is_active": true }))
        .key();
    let account_hours = s
        .add("HOURT", "Agency Account Management", json!({ "description": "Relationship management outside projects", "scope": "GENERAL", "is_billable": false, "is_active": true }))
        .key();
    s.add("TSPRO", "Standard Agency Timesheet", json!({ "description": "Weekly timesheet for agency staff", "period": "WEEKLY", "start_day": "MONDAY", "approval_required": true, "max_hours_per_day": 12 }))
        .to("default_hour_type", &onboarding_hours)
        .to("general_hour_type", &account_hours);
    s.add(
        "EXPTYP",
        "Mileage",
        json!({ "description": "Travel to agency sites", "rate_unit": "MILE", "rate": 0.655, "is_billable": true }),
    );
    s.add("EXPTYP", "Software License", json!({ "description": "Licences bought for agency collaboration", "rate_unit": "UNIT", "rate": 1.0, "is_billable": false }));
    s.add(
        "RSKTYP",
        "Client Readiness",
        json!({ "description": "The agency is not ready to start on the planned date", "default_probability": 30 }),
    );
    s.add(
        "RSKTYP",
        "Resource Availability",
        json!({ "description": "Key creative staff over-allocated", "default_probability": 20 }),
    );
    let pool = s
        .add(
            "RSPL",
            "Agency Delivery Pool",
            json!({ "description": "People who deliver agency onboarding work", "fte_capacity": 12.5 }),
        )
        .key();
    let portfolio = s
        .add("PORT", "Agency Growth", json!({ "description": "Investments that grow the partner agency network", "currency": "USD", "budget": 2_500_000, "is_active": true }))
        .to("group", &ops)
        .key();
    let program = s
        .add(
            "PRGM",
            "Agency Partnerships",
            json!({ "description": "Onboarding and managing partner agencies", "is_active": true }),
        )
        .to("portfolio", &portfolio)
        .to("group", &ops)
        .key();

    // Custom data: one parameter is shared by two forms, as Workfront parameters are.
    let details = s
        .add(
            "PGRP",
            "Agency Details",
            json!({ "description": "Who the agency is and what it will cost", "display_order": 1 }),
        )
        .key();
    let tier = s
        .add("PARAM", "Agency Tier", json!({ "description": "Strategic importance of the agency", "data_type": "TEXT", "display_type": "DROPDOWN", "is_required": true }))
        .key();
    for (order, label) in ["Tier 1", "Tier 2", "Tier 3"].into_iter().enumerate() {
        s.add("POPT", label, json!({ "value": label.to_uppercase().replace(' ', "_"), "display_order": order + 1, "is_default": order == 1 }))
            .under(&tier);
    }
    let region = s
        .add(
            "PARAM",
            "Onboarding Region",
            json!({ "description": "Where the agency operates", "data_type": "TEXT", "display_type": "RADIO" }),
        )
        .key();
    for (order, (label, value)) in
        [("North America", "NA"), ("Europe, Middle East and Africa", "EMEA"), ("Asia Pacific", "APAC")]
            .into_iter()
            .enumerate()
    {
        s.add("POPT", label, json!({ "value": value, "display_order": order + 1 })).under(&region);
    }
    let spend = s
        .add("PARAM", "Estimated Annual Spend", json!({ "description": "Expected yearly spend with the agency", "data_type": "CURRENCY", "display_type": "TEXT", "format": "USD" }))
        .key();
    let contact = s
        .add("PARAM", "Primary Contact Email", json!({ "description": "Agency-side contact", "data_type": "TEXT", "display_type": "TEXT", "validation": "EMAIL" }))
        .key();
    let intake = s
        .add("CTGY", "Agency Intake Form", json!({ "description": "Custom form for agency onboarding projects", "cat_obj_code": "PROJ", "is_active": true }))
        .to("group", &ops)
        .key();
    for (order, param, name, required) in [
        (1, &tier, "Agency Tier", true),
        (2, &region, "Onboarding Region", true),
        (3, &spend, "Estimated Annual Spend", false),
    ] {
        s.add("CTGYPA", name, json!({ "display_order": order, "is_required": required }))
            .under(&intake)
            .to("parameter", param)
            .to("parameter_group", &details);
    }
    s.add(
        "CTGYDL",
        "Show spend for Tier 1 agencies",
        json!({ "logic_type": "DISPLAY", "expression": "Agency Tier = Tier 1" }),
    )
    .under(&intake)
    .to("source_parameter", &tier)
    .to("target_parameter", &spend);
    let profile = s
        .add(
            "CTGY",
            "Agency Company Profile",
            json!({ "description": "Custom form for agency companies", "cat_obj_code": "CMPY", "is_active": true }),
        )
        .to("group", &accounts)
        .key();
    for (order, param, name) in [(1, &tier, "Agency Tier"), (2, &contact, "Primary Contact Email")] {
        s.add("CTGYPA", name, json!({ "display_order": order, "is_required": order == 1 }))
            .under(&profile)
            .to("parameter", param)
            .to("parameter_group", &details);
    }

    let company = s
        .add("CMPY", "Northwind Creative Agency", json!({ "description": "Full-service creative agency, preferred partner since 2021", "company_type": "VENDOR", "currency": "USD" }))
        .to("category", &profile)
        .to("group", &accounts)
        .key();
    s.add("RTOVR", "Designer Rate", json!({ "rate": 165.0, "currency": "USD", "start_date": "2023-01-01" }))
        .under(&company)
        .to("role", &designer);
    s.add("RTOVR", "Copywriter Rate", json!({ "rate": 140.0, "currency": "USD", "start_date": "2023-01-01" }))
        .under(&company)
        .to("role", &copywriter);

    // Approval, schedule and milestones used by the templates and the project.
    let approval = s
        .add("ARVPRC", "Agency Onboarding Approval", json!({ "description": "Sign-off before an onboarding project completes", "approval_obj_code": "PROJ", "is_private": false }))
        .to("group", &ops)
        .key();
    let path = s
        .add(
            "ARVPTH",
            "Completion Approval",
            json!({ "target_status": "CPL", "approved_status": "CPL", "rejected_status": "CUR", "duration_hours": 48 }),
        )
        .under(&approval)
        .key();
    let step = s
        .add("ARVSTP", "Account Director Sign-off", json!({ "sequence_number": 1, "approval_type": "ONE" }))
        .under(&path)
        .key();
    s.add("SPAPVR", "Account Director", json!({ "approver_type": "ROLE" })).under(&step).to("role", &director);
    let step = s
        .add("ARVSTP", "Operations Review", json!({ "sequence_number": 2, "approval_type": "ONE" }))
        .under(&path)
        .key();
    s.add("SPAPVR", "Agency Onboarding Team", json!({ "approver_type": "TEAM" }))
        .under(&step)
        .to("team", &onboarding_team);

    let schedule = s
        .add("SCHED", "Agency Standard Schedule", json!({ "description": "Monday to Friday, 9:00-17:00 Eastern", "time_zone": "America/New_York", "working_days": ["MON", "TUE", "WED", "THU", "FRI"], "day_start": "09:00", "day_end": "17:00" }))
        .to("group", &ops)
        .key();
    for (name, date) in [
        ("New Year's Day", "2023-01-02"),
        ("Memorial Day", "2023-05-29"),
        ("Independence Day", "2023-07-04"),
        ("Labor Day", "2023-09-04"),
        ("Thanksgiving Day", "2023-11-23"),
        ("Christmas Day", "2023-12-25"),
    ] {
        s.add("NONWKD", name, json!({ "date": date, "is_full_day": true })).under(&schedule);
    }

    let milestones = s
        .add(
            "MPATH",
            "Agency Onboarding Milestones",
            json!({ "description": "Checkpoints every agency onboarding goes through" }),
        )
        .key();
    let [signed, kicked_off, access, live] = [
        (1, "Contract Signed", "#2F80ED"),
        (2, "Kickoff Complete", "#9B51E0"),
        (3, "Systems Access Granted", "#F2994A"),
        (4, "Go Live", "#27AE60"),
    ]
    .map(|(sequence, name, color)| {
        s.add(
            "MILE",
            name,
            json!({ "sequence": sequence, "color": color, "description": format!("{name} for the agency") }),
        )
        .under(&milestones)
        .key()
    });

    // TMPL "New Agency Onboarding".
    let onboarding = s
        .add(
            "TMPL",
            "New Agency Onboarding",
            json!({
                "description": "Standard plan to bring a new partner agency from signed contract to live",
                "template_code": "AGY-ON", "planned_duration_days": 21, "priority": 2,
                "schedule_mode": "F", "currency": "USD", "is_active": true
            }),
        )
        .id(AGENCY_ONBOARDING_TMPL_ID)
        .to("group", &ops)
        .to("company", &company)
        .to("approval_process", &approval)
        .to("schedule", &schedule)
        .to("milestone_path", &milestones)
        .to("category", &intake)
        .to("default_hour_type", &onboarding_hours)
        .to("resource_pool", &pool)
        .to("team", &onboarding_team)
        .key();
    let contract = s
        .task("TTSK", &onboarding, 1, "Contract Review", 5, 10.0)
        .set("priority", json!(3))
        .to("milestone", &signed)
        .key();
    let kickoff = s
        .task("TTSK", &onboarding, 2, "Kickoff Meeting", 1, 4.0)
        .set("priority", json!(2))
        .to("milestone", &kicked_off)
        .key();
    let documents = s.task("TTSK", &onboarding, 3, "Collect Agency Documents", 3, 6.0).set("priority", json!(2)).key();
    let systems = s
        .task("TTSK", &onboarding, 4, "Systems Access Setup", 2, 8.0)
        .set("priority", json!(3))
        .to("milestone", &access)
        .key();
    let brand = s.task("TTSK", &onboarding, 5, "Brand Guidelines Workshop", 2, 12.0).set("priority", json!(1)).key();
    let go_live =
        s.task("TTSK", &onboarding, 6, "Go-Live Review", 1, 3.0).set("priority", json!(4)).to("milestone", &live).key();
    s.assignment("TASSGN", &contract, "Account Director", 10.0).to("role", &director).to("group", &accounts);
    s.assignment("TASSGN", &kickoff, "Project Manager", 4.0).to("role", &pm).to("group", &ops);
    s.assignment("TASSGN", &kickoff, "Account Director", 2.0).to("role", &director).to("group", &accounts);
    s.assignment("TASSGN", &documents, "Agency Onboarding Team", 6.0).to("team", &onboarding_team).to("group", &ops);
    s.assignment("TASSGN", &systems, "Agency Onboarding Team", 8.0).to("team", &onboarding_team).to("group", &ops);
    s.assignment("TASSGN", &brand, "Designer", 8.0).to("role", &designer).to("group", &creative);
    s.assignment("TASSGN", &brand, "Copywriter", 4.0).to("role", &copywriter).to("group", &creative);
    s.assignment("TASSGN", &go_live, "QA Analyst", 2.0).to("role", &qa_analyst).to("group", &ops);
    s.assignment("TASSGN", &go_live, "Creative Studio Team", 1.0).to("team", &studio_team).to("group", &creative);
    s.depends("TPRED", &kickoff, &contract, 0);
    s.depends("TPRED", &documents, &kickoff, 0);
    s.depends("TPRED", &systems, &documents, 1);
    s.depends("TPRED", &brand, &kickoff, 2);
    s.depends("TPRED", &go_live, &systems, 0);
    s.depends("TPRED", &go_live, &brand, 0);

    // TMPL "New Agency Offboarding": smaller, sharing groups, roles and the schedule.
    let offboarding = s
        .add(
            "TMPL",
            "New Agency Offboarding",
            json!({
                "description": "Wind down a partner agency: hand-offs, access removal and final invoice",
                "template_code": "AGY-OFF", "planned_duration_days": 10, "priority": 3,
                "schedule_mode": "F", "currency": "USD", "is_active": true
            }),
        )
        .id(AGENCY_OFFBOARDING_TMPL_ID)
        .to("group", &ops)
        .to("schedule", &schedule)
        .to("approval_process", &approval)
        .key();
    let handoff = s.task("TTSK", &offboarding, 1, "Final Deliverables Handoff", 3, 6.0).set("priority", json!(2)).key();
    let revoke = s.task("TTSK", &offboarding, 2, "Revoke Systems Access", 1, 2.0).set("priority", json!(4)).key();
    let invoice =
        s.task("TTSK", &offboarding, 3, "Final Invoice Reconciliation", 2, 5.0).set("priority", json!(3)).key();
    let retro = s.task("TTSK", &offboarding, 4, "Offboarding Retrospective", 1, 2.0).set("priority", json!(1)).key();
    s.assignment("TASSGN", &handoff, "Project Manager", 6.0).to("role", &pm).to("group", &ops);
    s.assignment("TASSGN", &revoke, "Agency Onboarding Team", 2.0).to("team", &onboarding_team).to("group", &ops);
    s.assignment("TASSGN", &invoice, "Account Director", 3.0).to("role", &director).to("group", &finance);
    s.assignment("TASSGN", &retro, "Project Manager", 2.0).to("role", &pm).to("group", &ops);
    s.depends("TPRED", &revoke, &handoff, 0);
    s.depends("TPRED", &invoice, &handoff, 0);
    s.depends("TPRED", &retro, &revoke, 0);
    s.depends("TPRED", &retro, &invoice, 0);

    // PROJ "Agency Request": a request queue project.
    let request = s
        .add(
            "PROJ",
            "Agency Request",
            json!({
                "description": "Intake queue for work requests from partner agencies",
                "status": "CUR", "priority": 2, "condition": "ON", "percent_complete": 35.0,
                "planned_start_date": "2023-03-21", "currency": "USD"
            }),
        )
        .id(AGENCY_REQUEST_PROJ_ID)
        .to("company", &company)
        .to("group", &ops)
        .to("schedule", &schedule)
        .to("category", &intake)
        .maybe("program", &program)
        .key();
    let triage = s
        .task("TASK", &request, 1, "Triage Incoming Requests", 1, 2.0)
        .set("status", json!("CPL"))
        .set("percent_complete", json!(100))
        .key();
    let scope = s
        .task("TASK", &request, 2, "Scope and Estimate", 2, 4.0)
        .set("status", json!("INP"))
        .set("percent_complete", json!(40))
        .key();
    let produce = s.task("TASK", &request, 3, "Produce Creative", 5, 36.0).set("priority", json!(3)).key();
    let deliver = s.task("TASK", &request, 4, "Deliver and Close", 1, 2.0).key();
    s.assignment("ASSGN", &triage, "Project Manager", 2.0).to("role", &pm).to("group", &ops);
    s.assignment("ASSGN", &scope, "Account Director", 4.0).to("role", &director).to("group", &accounts);
    s.assignment("ASSGN", &produce, "Designer", 24.0).to("role", &designer).to("group", &creative);
    s.assignment("ASSGN", &produce, "Copywriter", 12.0).to("role", &copywriter).to("group", &digital);
    s.assignment("ASSGN", &deliver, "Project Manager", 2.0).to("role", &pm).to("group", &ops);
    s.depends("PRED", &scope, &triage, 0);
    s.depends("PRED", &produce, &scope, 0);
    s.depends("PRED", &deliver, &produce, 1);
    let queue = s
        .add("QUED", "Agency Request Queue", json!({ "description": "Submit a request to the agency team", "is_public": true, "request_types": ["REQ", "ISU"], "default_duration_days": 3 }))
        .under(&request)
        .key();
    let creative_topics =
        s.add("QUTGRP", "Creative Requests", json!({ "description": "Design and copy work" })).under(&queue).key();
    let account_topics =
        s.add("QUTGRP", "Account Requests", json!({ "description": "Contracts and billing" })).under(&queue).key();
    let to_studio = s
        .add(
            "RRUL",
            "Route to Creative Studio",
            json!({ "description": "New creative work goes to the studio backlog" }),
        )
        .under(&queue)
        .to("group", &creative)
        .to("team", &studio_team)
        .key();
    let to_accounts = s
        .add(
            "RRUL",
            "Route to Account Management",
            json!({ "description": "Commercial questions go to account management" }),
        )
        .under(&queue)
        .to("group", &accounts)
        .key();
    for (parent, name, rule, days) in [
        (&creative_topics, "New Campaign Creative", &to_studio, 5),
        (&creative_topics, "Copy Revision", &to_studio, 2),
        (&account_topics, "Billing Question", &to_accounts, 1),
        (&queue, "General Agency Question", &to_accounts, 1),
    ] {
        s.add("QUET", name, json!({ "request_type": "REQ", "default_duration_days": days, "description": format!("{name} from a partner agency") }))
            .under(parent)
            .to("routing_rule", rule);
    }

    // PTLTAB "Agency Performance and Readiness" and its reports.
    let active_filter = s
        .add(
            "UIFT",
            "Active Agency Projects",
            json!({ "filter_obj_code": "PROJ", "definition": { "status": "CUR", "group:name": "Agency Operations" } }),
        )
        .to("parameter", &tier)
        .key();
    let open_filter = s
        .add(
            "UIFT",
            "Open Agency Requests",
            json!({ "filter_obj_code": "OPTASK", "definition": { "status": ["NEW", "INP"], "status_Mod": "in" } }),
        )
        .key();
    let by_tier = s
        .add("UIGB", "By Agency Tier", json!({ "group_obj_code": "PROJ", "group_by": ["DE:Agency Tier"] }))
        .to("parameter", &tier)
        .key();
    let readiness_view = s
        .add("UIVW", "Agency Readiness View", json!({ "view_obj_code": "PROJ", "columns": ["name", "percentComplete", "plannedCompletionDate", "DE:Agency Tier", "condition"] }))
        .to("parameter", &tier)
        .key();
    let triage_view = s
        .add("UIVW", "Request Triage View", json!({ "view_obj_code": "OPTASK", "columns": ["name", "priority", "entryDate", "assignedTo:name", "status"] }))
        .key();
    let readiness_report = s
        .add("PTLSEC", "Onboarding Readiness by Agency", json!({ "report_obj_code": "PROJ", "chart_type": "BAR", "description": "Percent complete of every agency onboarding" }))
        .to("filter", &active_filter)
        .to("grouping", &by_tier)
        .to("view", &readiness_view)
        .key();
    let requests_report = s
        .add(
            "PTLSEC",
            "Open Agency Requests",
            json!({ "report_obj_code": "OPTASK", "chart_type": "NONE", "description": "Requests waiting for triage" }),
        )
        .to("filter", &open_filter)
        .to("view", &triage_view)
        .key();
    let calendar = s
        .add(
            "CALEND",
            "Agency Onboarding Calendar",
            json!({ "description": "Kickoffs and go-lives across agencies", "default_view": "MONTH" }),
        )
        .key();
    for (name, color, definition) in
        [("Kickoff Dates", "#27AE60", "name=Kickoff Meeting"), ("Go-Live Dates", "#EB5757", "name=Go-Live Review")]
    {
        s.add("CALSEC", name, json!({ "section_obj_code": "TASK", "color": color, "definition": definition }))
            .under(&calendar);
    }
    let scorecard = s
        .add("EXTSEC", "Agency Health Scorecard", json!({ "url": "https://bi.acme.example/agency-health", "height_px": 600, "description": "Agency KPIs from the BI platform" }))
        .key();
    let dashboard = s
        .add("PTLTAB", "Agency Performance and Readiness", json!({ "description": "How agencies perform and how ready new ones are", "layout_columns": 2, "refresh_minutes": 15 }))
        .id(AGENCY_PERFORMANCE_PTLTAB_ID)
        .to("section_1", &readiness_report)
        .to("section_2", &requests_report)
        .to("section_3", &calendar)
        .to("section_4", &scorecard)
        .key();
    s.add("UITMPL", "Agency Operations Layout", json!({ "description": "Navigation for agency operations staff", "nav_items": ["home", "projects", "requests", "reports"] }))
        .to("dashboard", &dashboard);

    s.objects
}

/// Acme's QA: some of dev's groups and roles under other ids, plus qa-only objects.
fn qa() -> Vec<ConfigObject> {
    let mut s = Env::new("64a2c1f0002b7e11c5a0f6b2");
    let ops = s.group("Agency Operations").key();
    s.group("Creative Services");
    s.group("Account Management");
    let pm = s.role("Project Manager").key();
    s.role("Account Director");
    // Edited locally in qa: a pre-run shows the rate as a field-level change.
    s.role("Designer").set("billing_per_hour", json!(130.0));
    let testers = s
        .add(
            "GROUP",
            "QA Testers",
            json!({ "description": "Acceptance testers for promoted configuration", "is_active": true }),
        )
        .key();
    let legacy = s
        .add("TMPL", "Legacy QA Template", json!({ "description": "Regression checklist kept from the old QA process", "planned_duration_days": 2, "priority": 3, "is_active": false }))
        .to("group", &testers)
        .key();
    let smoke = s.task("TTSK", &legacy, 1, "Smoke Test Checklist", 1, 4.0).key();
    s.assignment("TASSGN", &smoke, "Project Manager", 1.0)
        .set("allocation_percent", json!(25))
        .to("role", &pm)
        .to("group", &ops);
    s.objects
}

/// Acme's production: a handful of groups and roles under yet other ids.
fn prod() -> Vec<ConfigObject> {
    let mut s = Env::new("65f0e3a70041d9a2b8c71e04");
    s.group("Agency Operations");
    s.group("Account Management");
    s.role("Project Manager");
    s.role("Account Director");
    s.objects
}

/// Globex's API management sandbox (seed 000): APIs with plans and pages.
fn globex_dev() -> Vec<ConfigObject> {
    let mut s = Env::new("5e8f2c1a7b3d4e6f9a0c1b2d");
    let [alice, raj, maria] = [
        ("alice.nguyen", "Alice Nguyen", "alice.nguyen@globex.example"),
        ("raj.patel", "Raj Patel", "raj.patel@globex.example"),
        ("maria.garcia", "Maria Garcia", "maria.garcia@globex.example"),
    ]
    .map(|(name, display, email)| {
        s.add("MEMBER", name, json!({ "display_name": display, "email": email, "status": "ACTIVE" })).key()
    });
    let [payments_team, commerce, _] = [
        ("Payments Team", "Owns card and wallet payment APIs"),
        ("Commerce Platform", "Order and inventory services"),
        ("Partner Developers", "External developers with early access"),
    ]
    .map(|(name, description)| {
        s.add("GROUP", name, json!({ "description": description, "event_rules": ["API_CREATE"] })).key()
    });

    let apis = [
        (
            "Payments API",
            "2.1.0",
            "/payments/v2",
            "PUBLIC",
            "Card, wallet and refund payments",
            &alice,
            &payments_team,
            ["alice.nguyen", "raj.patel"],
            ["Payments Team", "Partner Developers"],
        ),
        (
            "Orders API",
            "1.4.2",
            "/orders/v1",
            "PUBLIC",
            "Create, track and cancel customer orders",
            &raj,
            &commerce,
            ["raj.patel", "maria.garcia"],
            ["Commerce Platform", "Partner Developers"],
        ),
        (
            "Inventory API",
            "0.9.0",
            "/inventory/v1",
            "PRIVATE",
            "Stock levels per warehouse (internal)",
            &maria,
            &commerce,
            ["maria.garcia", "alice.nguyen"],
            ["Commerce Platform", "Payments Team"],
        ),
    ];
    for (name, version, context_path, visibility, description, owner, group, members, groups) in apis {
        let api = s
            .add(
                "API",
                name,
                json!({
                    "version": version, "context_path": context_path, "visibility": visibility,
                    "description": description, "lifecycle_state": "PUBLISHED",
                    "members": members, "groups": groups
                }),
            )
            .to("member", owner)
            .to("group", group)
            .key();
        let plans: &[(&str, &str, u32)] = match visibility {
            "PUBLIC" => &[("Free", "KEY_LESS", 100), ("Gold", "API_KEY", 1_000), ("Partner", "OAUTH2", 10_000)],
            _ => &[("Internal", "JWT", 5_000)],
        };
        for (order, (plan, security, limit)) in plans.iter().enumerate() {
            s.add(
                "PLAN",
                plan,
                json!({
                    "security": security, "status": "PUBLISHED", "order": order + 1,
                    "rate_limit": { "limit": limit, "period_time": 1, "period_unit": "MINUTES" },
                    "validation": if *security == "KEY_LESS" { "AUTO" } else { "MANUAL" }
                }),
            )
            .under(&api);
        }
        s.add("PAGE", "Getting Started", json!({
            "type": "MARKDOWN", "published": true, "order": 1,
            "content": format!("# {name}\n\n{description}.\n\nBase path: `{context_path}`. Subscribe to a plan to get credentials.")
        }))
        .under(&api);
        if visibility == "PUBLIC" {
            s.add("PAGE", "OpenAPI Specification", json!({
                "type": "SWAGGER", "published": true, "order": 2,
                "content": format!("openapi: 3.0.3\ninfo:\n  title: {name}\n  version: {version}\nservers:\n  - url: https://api.globex.example{context_path}\npaths: {{}}\n")
            }))
            .under(&api);
        }
    }
    s.objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::catalog::{apim, workfront, Catalog};
    use crate::shared::objects::is_valid_object_id;
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    fn environments() -> Vec<(&'static str, Catalog)> {
        vec![
            ("dev", workfront()),
            ("qa", workfront()),
            ("prod", workfront()),
            ("globex-dev", apim()),
            ("globex-prod", apim()),
        ]
    }

    fn names(objects: &[ConfigObject], obj_code: &str) -> BTreeMap<String, String> {
        objects.iter().filter(|o| o.obj_code == obj_code).map(|o| (o.name.clone(), o.id.clone())).collect()
    }

    #[test]
    fn every_environment_is_consistent_with_its_catalog() {
        for (env, catalog) in environments() {
            let objects = demo_objects(env);
            let by_id: HashMap<&str, &ConfigObject> = objects.iter().map(|o| (o.id.as_str(), o)).collect();
            assert_eq!(by_id.len(), objects.len(), "{env}: ids are unique");
            let resolves = |key: &ObjectKey| by_id.get(key.id.as_str()).is_some_and(|o| o.obj_code == key.obj_code);
            let mut unique = BTreeSet::new();
            for o in &objects {
                let t = catalog.get(&o.obj_code).unwrap_or_else(|| panic!("{env}: {} not in catalog", o.obj_code));
                assert!(is_valid_object_id(&o.id), "{env}: bad id {}", o.id);
                assert!(!o.name.trim().is_empty(), "{env}: {} has a name", o.key());
                assert_eq!((o.revision, o.update_time), (0, None), "{env}: {}", o.key());
                for r in &o.references {
                    assert!(resolves(&r.key()), "{env}: {} -> {} ({}) dangles", o.key(), r.key(), r.field);
                }
                match &o.parent {
                    Some(parent) => {
                        assert!(
                            t.parent_types.contains(&parent.obj_code),
                            "{env}: {} cannot be owned by {}",
                            o.key(),
                            parent.obj_code
                        );
                        assert!(resolves(parent), "{env}: parent of {} dangles", o.key());
                    }
                    // Roots may nest (sub-groups); owned sub-objects always have an owner.
                    None => assert!(t.root || t.parent_types.is_empty(), "{env}: owned {} has no parent", o.key()),
                }
                if t.unique_names {
                    assert!(unique.insert((&o.obj_code, &o.name)), "{env}: duplicate {} name {:?}", o.obj_code, o.name);
                }
            }
        }
    }

    #[test]
    fn ids_are_deterministic_and_never_shared_between_environments() {
        let mut seen = BTreeSet::new();
        for (env, _) in environments() {
            assert_eq!(demo_objects(env), demo_objects(env));
            for o in demo_objects(env) {
                assert!(seen.insert(o.id.clone()), "{} appears in two environments", o.id);
            }
        }
        assert!(demo_objects("globex-prod").is_empty());
        assert!(demo_objects("nowhere").is_empty());
    }

    #[test]
    fn dev_holds_the_seed_roots_with_their_ids() {
        let objects = demo_objects("dev");
        assert!((80..=150).contains(&objects.len()), "dev has {} objects", objects.len());
        for (obj_code, id, name) in [
            ("PROJ", AGENCY_REQUEST_PROJ_ID, "Agency Request"),
            ("TMPL", AGENCY_ONBOARDING_TMPL_ID, "New Agency Onboarding"),
            ("TMPL", AGENCY_OFFBOARDING_TMPL_ID, "New Agency Offboarding"),
            ("PTLTAB", AGENCY_PERFORMANCE_PTLTAB_ID, "Agency Performance and Readiness"),
        ] {
            let o = objects.iter().find(|o| o.id == id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!((o.obj_code.as_str(), o.name.as_str()), (obj_code, name));
        }
        let children = |id: &str, code: &str| {
            objects.iter().filter(|o| o.obj_code == code && o.parent.as_ref().is_some_and(|p| p.id == id)).count()
        };
        assert!(children(AGENCY_ONBOARDING_TMPL_ID, "TTSK") >= 6);
        assert!(children(AGENCY_REQUEST_PROJ_ID, "TASK") >= 3);
        assert_eq!(children(AGENCY_REQUEST_PROJ_ID, "QUED"), 1);
        let codes: BTreeSet<&str> = objects.iter().map(|o| o.obj_code.as_str()).collect();
        for t in workfront().types {
            assert!(codes.contains(t.obj_code.as_str()), "dev has no {}", t.obj_code);
        }
    }

    #[test]
    fn siblings_have_distinct_names() {
        // Pre-runs match sub-objects by name under their matched parent.
        for (env, _) in environments() {
            let mut seen = BTreeSet::new();
            for o in demo_objects(env) {
                if let Some(parent) = &o.parent {
                    assert!(
                        seen.insert((parent.id.clone(), o.obj_code.clone(), o.name.clone())),
                        "{env}: two {} {:?} under {parent}",
                        o.obj_code,
                        o.name
                    );
                }
            }
        }
    }

    #[test]
    fn predecessors_stay_inside_their_template_or_project() {
        let objects = demo_objects("dev");
        let owner = |id: &str| objects.iter().find(|o| o.id == id).and_then(|o| o.parent.clone());
        for o in objects.iter().filter(|o| o.obj_code == "TPRED" || o.obj_code == "PRED") {
            let task = o.parent.as_ref().unwrap();
            let predecessor = o.references.iter().find(|r| r.field == "predecessor").unwrap();
            assert_eq!(predecessor.obj_code, task.obj_code);
            assert_ne!(predecessor.id, task.id);
            assert_eq!(owner(&predecessor.id), owner(&task.id), "{}", o.name);
        }
    }

    #[test]
    fn qa_shares_groups_and_roles_with_dev_under_other_ids() {
        let (dev, qa) = (demo_objects("dev"), demo_objects("qa"));
        for code in ["GROUP", "ROLE"] {
            let (dev_names, qa_names) = (names(&dev, code), names(&qa, code));
            let shared: Vec<_> = qa_names.iter().filter(|(n, _)| dev_names.contains_key(*n)).collect();
            assert!(shared.len() >= 2, "qa shares {} {code} names with dev", shared.len());
            for (name, id) in shared {
                assert_ne!(&dev_names[name], id, "{code} {name} has another id in qa");
            }
        }
        assert!(names(&qa, "GROUP").contains_key("QA Testers"));
        assert!(!names(&dev, "GROUP").contains_key("QA Testers"));
    }

    #[test]
    fn globex_apis_have_plans_pages_members_and_groups() {
        let objects = demo_objects("globex-dev");
        let apis: Vec<_> = objects.iter().filter(|o| o.obj_code == "API").collect();
        assert!(apis.len() >= 2);
        for api in apis {
            for field in ["version", "context_path", "description", "visibility"] {
                assert!(api.fields[field].is_string(), "{} {field}", api.name);
            }
            assert!(api.fields["members"].as_array().is_some_and(|m| !m.is_empty()));
            assert!(api.fields["groups"].as_array().is_some_and(|g| !g.is_empty()));
            let fields: BTreeSet<_> = api.references.iter().map(|r| (r.field.as_str(), r.obj_code.as_str())).collect();
            assert!(fields.contains(&("member", "MEMBER")) && fields.contains(&("group", "GROUP")));
            for code in ["PLAN", "PAGE"] {
                assert!(
                    objects.iter().any(|o| o.obj_code == code && o.parent.as_ref() == Some(&api.key())),
                    "{} has a {code}",
                    api.name
                );
            }
        }
    }
}
