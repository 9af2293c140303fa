//! How results reach the terminal: output formats (proto3 JSON or YAML of the `promotion.v1`
//! messages), aligned tables, ANSI colour (only on a terminal), escaping of what the
//! services send so that no control character reaches the terminal raw, confirmations,
//! and the progress spinner.
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use prost_types::Timestamp;
use serde_json::Value as Json;

use super::error::CliError;
use promotion_api::convert::from_timestamp;
use promotion_api::v1 as pb;

/// What the client prints on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and summaries for people.
    Human,
    /// The proto3 JSON mapping of the response messages (lowerCamelCase names, enum names,
    /// RFC 3339 timestamps, default values included); `watch` prints one document per line.
    Json,
    /// The same documents as YAML; `watch` separates them with `---`.
    Yaml,
    /// Only the id(s) of the resulting resources, one per line, for shell variables.
    Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when standard output is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "31",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Cyan => "36",
        }
    }
}

/// The output settings of one invocation.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub format: Format,
    pub color: bool,
}

impl Out {
    pub fn new(format: Format, color: ColorChoice) -> Out {
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        };
        Out { format, color }
    }

    pub fn paint(&self, style: Style, text: &str) -> String {
        if !self.color || style == Style::Plain || text.is_empty() {
            return text.to_string();
        }
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    }

    /// JSON or YAML: output for scripts.
    pub fn structured(&self) -> bool {
        matches!(self.format, Format::Json | Format::Yaml)
    }

    /// Prints a document in the chosen structured format (pretty JSON unless YAML).
    pub fn print_json(&self, value: &Json) {
        print!("{}", document(self.format, value));
    }
}

/// A document as YAML (for `--output yaml`) or pretty JSON, ending in a newline.
pub fn document(format: Format, value: &Json) -> String {
    if format == Format::Yaml {
        return serde_yaml::to_string(value).unwrap_or_else(|_| value.to_string() + "\n");
    }
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) + "\n"
}

/// Text from a service (names, ids, messages) made safe for a terminal: control
/// characters, escape sequences and bidirectional overrides are written as visible
/// escapes (`\x1b`, `\u{202e}`), so an object name cannot move the cursor, change colours
/// or reorder what is shown.
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Asks `question` on a terminal; without one, refuses with an error that names `--yes`.
/// `what` says what would be done ("delete package P").
pub fn confirm(question: &str, what: &str) -> Result<(), CliError> {
    use std::io::Write;
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "refusing to {what} without confirmation: standard input is not a terminal; add --yes"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| CliError::usage(e.to_string()))?;
    if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::failed(format!("did not {what}: not confirmed")))
    }
}

/// Prints `message` in the chosen format: its proto3 JSON, the `ids`, or the human text.
pub fn emit<M: ProtoMessage>(
    out: &Out,
    message: &M,
    ids: &[String],
    human: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match out.format {
        Format::Json | Format::Yaml => out.print_json(&to_json(message)?),
        Format::Id => ids.iter().for_each(|id| println!("{}", safe(id))),
        Format::Human => print!("{}", human()),
    }
    Ok(())
}

/// [`emit`] for a document that is not a `promotion.v1` message (profiles, deletions).
pub fn emit_json(out: &Out, doc: &Json, ids: &[String], human: impl FnOnce() -> String) -> Result<(), CliError> {
    match out.format {
        Format::Json | Format::Yaml => out.print_json(doc),
        Format::Id => ids.iter().for_each(|id| println!("{}", safe(id))),
        Format::Human => print!("{}", human()),
    }
    Ok(())
}

/// A line for people about what is happening, on standard error so that standard
/// output stays the result; silent for `json`, `yaml` and `id` output. The text may hold
/// what a service sent: it is escaped (line breaks of the message itself are kept).
pub fn note(out: &Out, message: impl AsRef<str>) {
    if out.format == Format::Human {
        let lines: Vec<String> = message.as_ref().lines().map(|l| safe(l).into_owned()).collect();
        eprintln!("{}", lines.join("\n"));
    }
}

/// A `promotion.v1` message the client can print as (or read from) proto3 JSON.
pub trait ProtoMessage: prost::Message + Default {
    const NAME: &'static str;
}

macro_rules! proto_messages {
    ($($t:ident),* $(,)?) => {
        $(impl ProtoMessage for pb::$t {
            const NAME: &'static str = concat!("promotion.v1.", stringify!($t));
        })*
        #[cfg(test)]
        const ALL_NAMES: &[&str] = &[$(concat!("promotion.v1.", stringify!($t))),*];
    };
}

proto_messages!(
    IssueTokenResponse,
    Identity,
    Environment,
    ListEnvironmentsResponse,
    Catalog,
    ConfigObject,
    ListObjectsResponse,
    PutObjectsRequest,
    PutObjectsResponse,
    DeleteObjectResponse,
    Package,
    ListPackagesResponse,
    PackageDefinitionHeader,
    PackageEntities,
    DiffPackageVersionsResponse,
    PreRun,
    Installation,
    ListInstallationsResponse,
    GetDriftResponse,
    PromotionRequest,
    ListPromotionTasksResponse,
    ListPromotionRequestsResponse,
    AuditEvent,
    ListAuditEventsResponse,
    EnvironmentPolicy,
);

fn pool() -> Result<&'static DescriptorPool, CliError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(promotion_api::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| CliError::failed(format!("the built-in descriptor set is unreadable: {e}")))
}

fn dynamic<M: ProtoMessage>(message: &M) -> Result<DynamicMessage, CliError> {
    let descriptor = pool()?
        .get_message_by_name(M::NAME)
        .ok_or_else(|| CliError::failed(format!("no descriptor for {}", M::NAME)))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(|e| CliError::failed(e.to_string()))
}

/// The proto3 JSON mapping of `message`, as grpcurl prints it but with default values
/// included (scripts can rely on every field being there) and 64-bit integers as numbers.
pub fn to_json<M: ProtoMessage>(message: &M) -> Result<Json, CliError> {
    let options = SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(false);
    let mut json = dynamic(message)?
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| CliError::failed(e.to_string()))?;
    integral_floats_as_integers(&mut json);
    Ok(json)
}

/// `google.protobuf.Value` numbers are doubles, so object fields such as `"priority": 3`
/// would print as `3.0`; print them as they were written.
fn integral_floats_as_integers(json: &mut Json) {
    match json {
        Json::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *json = Json::from(f as i64);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Json::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Reads `value` (proto3 JSON: lowerCamelCase or snake_case names) as a `M`; unknown
/// fields are refused so that a typo does not silently drop data.
pub fn from_json<M: ProtoMessage>(value: Json) -> Result<M, String> {
    let descriptor = pool().map_err(|e| e.to_string())?.get_message_by_name(M::NAME).ok_or("no descriptor")?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message = DynamicMessage::deserialize_with_options(descriptor, value, &options).map_err(|e| e.to_string())?;
    M::decode(message.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

/// `2026-11-01 09:30:12Z`, or `-` when unset.
pub fn time(t: &Option<Timestamp>) -> String {
    t.as_ref().and_then(from_timestamp).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// `-` for an empty string, so table columns stay readable.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// `TMPL=2 TASK=14`, sorted by key.
pub fn counts(map: &std::collections::HashMap<String, i64>) -> String {
    let mut items: Vec<_> = map.iter().collect();
    items.sort();
    let text = items.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    or_dash(&text)
}

/// Text and its style; the text is escaped ([`safe`]) when rendered, the style applied
/// after, so only our own colour codes reach the terminal.
pub struct Cell {
    text: String,
    style: Style,
    /// Already escaped and painted here (a coloured summary): printed as it is.
    painted: bool,
}

pub fn cell(text: impl Into<String>, style: Style) -> Cell {
    Cell { text: text.into(), style, painted: false }
}

/// A value this client escaped and coloured itself, for [`details`] only (a table aligns
/// on text, which colour codes would throw off).
pub fn painted(text: String) -> Cell {
    Cell { text, style: Style::Plain, painted: true }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        cell(text, Style::Plain)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        cell(text, Style::Plain)
    }
}

/// Columns aligned on the visible width of their text (colour codes are added after padding).
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, out: &Out, indent: &str) -> String {
        let header: Vec<Cell> = self.header.iter().map(|h| cell(*h, Style::Bold)).collect();
        let rows: Vec<Vec<Cell>> = std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| row.iter().map(|c| cell(safe(&c.text).into_owned(), c.style)).collect())
            .collect();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.text.chars().count());
                }
            }
        }
        let mut text = String::new();
        for row in &rows {
            let mut line = indent.to_string();
            for (i, c) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = if last { 0 } else { width.saturating_sub(c.text.chars().count()) + 2 };
                line.push_str(&out.paint(c.style, &c.text));
                line.push_str(&" ".repeat(pad));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `Label:   value` lines, labels aligned; values escaped, then styled.
pub fn details(out: &Out, pairs: &[(&str, Cell)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 1;
    pairs
        .iter()
        .map(|(k, v)| {
            let label = format!("{k}:");
            let value = if v.painted { v.text.clone() } else { out.paint(v.style, &safe(&v.text)) };
            format!("{}{} {value}\n", out.paint(Style::Bold, &label), " ".repeat(width - label.chars().count()))
        })
        .collect()
}

/// A spinner with a message and the elapsed time on standard error, shown only when
/// standard error is a terminal; cleared when finished.
pub struct Progress {
    sender: Option<tokio::sync::watch::Sender<String>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(message: impl Into<String>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { sender: None, task: None };
        }
        let (sender, mut receiver) = tokio::sync::watch::channel(message.into());
        let task = tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for frame in FRAMES.iter().cycle() {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = receiver.changed() => if changed.is_err() { break },
                }
                let message = receiver.borrow().clone();
                eprint!("\r\x1b[2K{frame} {message} {:.1}s", started.elapsed().as_secs_f64());
            }
            eprint!("\r\x1b[2K");
        });
        Progress { sender: Some(sender), task: Some(task) }
    }

    pub fn set(&self, message: impl Into<String>) {
        if let Some(s) = &self.sender {
            s.send_replace(message.into());
        }
    }

    pub async fn finish(mut self) {
        self.sender.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printed_message_has_a_descriptor() {
        let pool = pool().unwrap();
        for name in ALL_NAMES {
            assert!(pool.get_message_by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn messages_print_as_proto3_json_with_defaults() {
        let p = pb::Package {
            id: "p1".into(),
            status: pb::PackageStatus::Preview as i32,
            version: 3,
            create_time: Some(Timestamp { seconds: 0, nanos: 0 }),
            ..Default::default()
        };
        let j = to_json(&p).unwrap();
        assert_eq!(j["status"], "PACKAGE_STATUS_PREVIEW");
        assert_eq!(j["version"], 3);
        assert_eq!(j["createTime"], "1970-01-01T00:00:00Z");
        assert_eq!(j["isPrivate"], false, "defaults are included");
        let o = pb::ConfigObject {
            fields: Some(promotion_api::convert::map_to_struct(
                serde_json::json!({"n": 3, "x": 1.5}).as_object().unwrap(),
            )),
            ..Default::default()
        };
        assert_eq!(to_json(&o).unwrap()["fields"], serde_json::json!({"n": 3, "x": 1.5}));
    }

    #[test]
    fn json_reads_both_spellings_and_refuses_unknown_fields() {
        let o: pb::ConfigObject =
            from_json(serde_json::json!({"obj_code": "GROUP", "name": "Ops", "fields": {"a": 1}})).unwrap();
        assert_eq!((o.obj_code.as_str(), o.name.as_str()), ("GROUP", "Ops"));
        let o: pb::ConfigObject = from_json(serde_json::json!({"objCode": "GROUP"})).unwrap();
        assert_eq!(o.obj_code, "GROUP");
        assert!(from_json::<pb::ConfigObject>(serde_json::json!({"objcode": "GROUP"})).is_err());
    }

    #[test]
    fn what_services_send_cannot_reach_the_terminal_raw() {
        assert_eq!(safe("Ops"), "Ops");
        assert_eq!(safe("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(safe("line\nbreak\u{7}"), "line\\nbreak\\x07");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{9b}31m"), "\\x9b31m", "the C1 form of CSI");
        let out = Out { format: Format::Human, color: false };
        let mut t = Table::new(&["NAME"]);
        t.row(vec!["\x1b]0;pwned\x07".into()]);
        assert!(!t.render(&out, "").contains('\x1b'));
        assert!(!details(&out, &[("Name", "x\x1by".into())]).contains('\x1b'));
    }

    #[test]
    fn documents_print_as_json_or_yaml() {
        let doc = serde_json::json!({"a": [1, 2], "b": "x"});
        assert_eq!(document(Format::Yaml, &doc), "a:\n- 1\n- 2\nb: x\n");
        assert!(document(Format::Json, &doc).starts_with("{\n  \"a\""));
    }

    #[test]
    fn tables_align_on_visible_width() {
        let out = Out { format: Format::Human, color: true };
        let mut t = Table::new(&["A", "B"]);
        t.row(vec![cell("long text", Style::Red), "x".into()]);
        let plain = Out { format: Format::Human, color: false };
        assert_eq!(t.render(&plain, ""), "A          B\nlong text  x\n");
        assert!(t.render(&out, "").contains("\x1b[31mlong text\x1b[0m  x"));
    }
}
