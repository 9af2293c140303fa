//! `package diff ID --from N --to M` (PackageService.DiffPackageVersions): the objects
//! added, removed and changed between two versions of a package, with each changed field.
use super::install::change_line;
use crate::connect::Session;
use crate::error::CliError;
use crate::output::{cell, details, emit, safe, Out, Style, Table};
use crate::parse::short;
use promotion_api::v1 as pb;

/// Every page of the diff, merged into one response.
pub async fn diff(session: &Session, out: &Out, id: String, from: i64, to: i64) -> Result<(), CliError> {
    let mut client = session.packages().await?;
    let mut request = pb::DiffPackageVersionsRequest { id, from_version: from, to_version: to, ..Default::default() };
    let mut whole = client.diff_package_versions(session.request(request.clone())).await?.into_inner();
    while !whole.next_page_token.is_empty() {
        request.page_token = std::mem::take(&mut whole.next_page_token);
        let page = client.diff_package_versions(session.request(request.clone())).await?.into_inner();
        whole.objects.extend(page.objects);
        whole.next_page_token = page.next_page_token;
    }
    let ids: Vec<String> = whole.objects.iter().map(|o| o.id.clone()).collect();
    emit(out, &whole, &ids, || render(out, &whole))
}

fn kind_name(kind: i32) -> String {
    pb::ObjectDiffKind::try_from(kind)
        .map_or_else(|_| kind.to_string(), |k| short(k.as_str_name(), "OBJECT_DIFF_KIND_"))
}

fn kind_style(kind: i32) -> Style {
    match pb::ObjectDiffKind::try_from(kind) {
        Ok(pb::ObjectDiffKind::Added) => Style::Green,
        Ok(pb::ObjectDiffKind::Removed) => Style::Red,
        _ => Style::Yellow,
    }
}

fn render(out: &Out, d: &pb::DiffPackageVersionsResponse) -> String {
    let count = |k: &str| d.summary.get(k).copied().unwrap_or(0);
    let pairs = vec![
        ("Package", d.id.clone().into()),
        ("From", format!("version {} ({})", d.from_version, d.from_digest).into()),
        ("To", format!("version {} ({})", d.to_version, d.to_digest).into()),
        (
            "Summary",
            format!("{} changed, {} added, {} removed", count("CHANGED"), count("ADDED"), count("REMOVED")).into(),
        ),
    ];
    let mut text = details(out, &pairs);
    if d.objects.is_empty() {
        text.push_str("\nThe two versions hold the same objects.\n");
        return text;
    }
    let mut table = Table::new(&["CHANGE", "TYPE", "ID", "NAME"]);
    for o in &d.objects {
        table.row(vec![
            cell(kind_name(o.kind), kind_style(o.kind)),
            o.obj_code.as_str().into(),
            cell(&o.id, Style::Dim),
            cell(&o.name, Style::Bold),
        ]);
    }
    text.push('\n');
    text.push_str(&table.render(out, ""));
    for o in d.objects.iter().filter(|o| !o.changes.is_empty()) {
        let head = format!("{} {} {:?}", o.obj_code, o.id, o.name);
        let range = format!("(- version {}, + version {})", d.from_version, d.to_version);
        text.push_str(&format!("  {} {} {range}:\n", out.paint(Style::Bold, "changes of"), safe(&head)));
        for c in &o.changes {
            text.push_str(&change_line(out, c));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Format;
    use promotion_api::convert::json_to_value;

    #[test]
    fn a_diff_lists_each_object_and_the_changed_fields_between_the_versions() {
        let change = pb::FieldChange {
            path: "fields.planned_duration_days".into(),
            before: Some(json_to_value(&10.into())),
            after: Some(json_to_value(&12.into())),
        };
        let d = pb::DiffPackageVersionsResponse {
            id: "p".into(),
            from_version: 1,
            to_version: 2,
            summary: [("CHANGED".to_string(), 1)].into(),
            objects: vec![pb::ObjectDiff {
                obj_code: "TMPL".into(),
                id: "t".into(),
                name: "Offboarding".into(),
                kind: pb::ObjectDiffKind::Changed as i32,
                changes: vec![change],
            }],
            ..Default::default()
        };
        let text = render(&Out { format: Format::Human, color: false }, &d);
        assert!(text.contains("1 changed, 0 added, 0 removed"), "{text}");
        assert!(text.contains("CHANGED  TMPL  t   Offboarding"), "{text}");
        assert!(
            text.contains(
                "changes of TMPL t \"Offboarding\" (- version 1, + version 2):\n      \
                 - fields.planned_duration_days: 10\n      + fields.planned_duration_days: 12\n"
            ),
            "{text}"
        );
    }
}
