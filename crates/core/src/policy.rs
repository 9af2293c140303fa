//! The governance policy of one environment: how many distinct approvers a promotion into
//! it needs, whether a requester may approve their own request, and when changes may land
//! (allowed windows and freezes). Admins change it at run time; an environment nobody
//! configured has the defaults (one approval, no self-approval, always open).
use chrono::{DateTime, Datelike, Duration, FixedOffset, TimeZone, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Invalid;

/// More distinct approvers than this is a typo, not a policy.
pub const MAX_REQUIRED_APPROVALS: u32 = 10;
/// Bounds that keep a policy (and the search for its next opening) small.
pub const MAX_WINDOWS: usize = 20;
pub const MAX_FREEZES: usize = 50;
const MINUTES_PER_DAY: u32 = 24 * 60;
/// Fixed UTC offsets only reach this far (UTC-12 to UTC+14).
const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// When changes may land, weekly: on `days`, from `start_minute` to `end_minute` (minutes
/// after midnight, end excluded) at a fixed offset from UTC. A fixed offset keeps the rule
/// exact and dependency-free; a zone with daylight saving time needs its window restated
/// when the clocks change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub start_minute: u32,
    pub end_minute: u32,
    pub utc_offset_minutes: i32,
}

/// A time when nothing may land, whatever the windows say: [start, end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
}

/// Why changes may not land now, and when they may again (None: not within the next
/// windows and freezes the policy holds, e.g. windows on no day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub reason: String,
    pub opens: Option<DateTime<Utc>>,
}

impl Window {
    fn offset(&self) -> FixedOffset {
        FixedOffset::east_opt(self.utc_offset_minutes * 60).unwrap_or(FixedOffset::east_opt(0).expect("UTC"))
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.offset());
        let minute = local.hour() * 60 + local.minute();
        self.days.contains(&local.weekday()) && (self.start_minute..self.end_minute).contains(&minute)
    }

    /// The first opening of this window after `t`, within a week.
    fn next_start_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = self.offset();
        let today = t.with_timezone(&offset).date_naive();
        (0..=7).find_map(|d| {
            let day = today + Duration::days(d);
            if !self.days.contains(&day.weekday()) {
                return None;
            }
            let local = day.and_hms_opt(0, 0, 0)? + Duration::minutes(i64::from(self.start_minute));
            let start = offset.from_local_datetime(&local).single()?.with_timezone(&Utc);
            (start > t).then_some(start)
        })
    }

    fn validate(&self) -> Result<(), Invalid> {
        let bad = |m: &str| Err(Invalid::new("INVALID_POLICY", "policy.windows", m));
        if self.days.is_empty() {
            return bad("a window needs at least one day");
        }
        if self.start_minute >= self.end_minute || self.end_minute > MINUTES_PER_DAY {
            return bad("a window's start_time must be before its end_time, both within one day (end 24:00 at most)");
        }
        if self.utc_offset_minutes.abs() > MAX_OFFSET_MINUTES {
            return bad("a window's time_zone offset must be between -14:00 and +14:00");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentPolicy {
    pub environment: String,
    /// Distinct approvers whose accepts a promotion request needs before it installs.
    pub required_approvals: u32,
    /// Whether the requester may be one of them (whatever roles they hold).
    pub allow_self_approval: bool,
    /// When installs, accepts and rollbacks may happen; none: any time.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// When they may not, whatever the windows say.
    #[serde(default)]
    pub freezes: Vec<Freeze>,
    /// Incremented by every update; 0 for the defaults nobody changed. The etag derives
    /// from it.
    pub revision: u64,
    pub update_time: Option<DateTime<Utc>>,
    pub updated_by: String,
}

impl EnvironmentPolicy {
    /// The policy of an environment nobody configured.
    pub fn defaults(environment: &str) -> Self {
        EnvironmentPolicy {
            environment: environment.to_string(),
            required_approvals: 1,
            allow_self_approval: false,
            windows: vec![],
            freezes: vec![],
            revision: 0,
            update_time: None,
            updated_by: String::new(),
        }
    }

    /// Opaque; changes with every update.
    pub fn etag(&self) -> String {
        let digest = Sha256::digest(format!("policy/{}/{}", self.environment, self.revision));
        hex::encode(&digest[..10])
    }

    /// The rules every stored policy obeys.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=MAX_REQUIRED_APPROVALS).contains(&self.required_approvals) {
            return Err(Invalid::new(
                "INVALID_POLICY",
                "required_approvals",
                format!("required_approvals must be between 1 and {MAX_REQUIRED_APPROVALS}"),
            ));
        }
        if self.windows.len() > MAX_WINDOWS || self.freezes.len() > MAX_FREEZES {
            let message = format!("a policy holds at most {MAX_WINDOWS} windows and {MAX_FREEZES} freezes");
            return Err(Invalid::new("INVALID_POLICY", "policy", message));
        }
        self.windows.iter().try_for_each(Window::validate)?;
        for f in &self.freezes {
            if f.end <= f.start || f.reason.trim().is_empty() {
                let message = "a freeze needs an end_time after its start_time and a reason";
                return Err(Invalid::new("INVALID_POLICY", "policy.freezes", message));
            }
        }
        Ok(())
    }

    fn freeze_at(&self, t: DateTime<Utc>) -> Option<&Freeze> {
        self.freezes.iter().find(|f| f.start <= t && t < f.end)
    }

    fn in_a_window(&self, t: DateTime<Utc>) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(t))
    }

    /// Why installs, accepts and rollbacks may not happen at `now`; None when they may.
    pub fn closed_at(&self, now: DateTime<Utc>) -> Option<Closed> {
        let reason = match self.freeze_at(now) {
            Some(f) => format!("frozen: {}", f.reason),
            None if !self.in_a_window(now) => "outside the promotion windows".to_string(),
            None => return None,
        };
        Some(Closed { reason, opens: self.next_opening(now) })
    }

    /// The first time at or after `t` that is in a window and in no freeze. Each step
    /// jumps to a freeze's end or a window's next start, so the bounded loop covers every
    /// policy within its limits.
    fn next_opening(&self, mut t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for _ in 0..(4 * (MAX_FREEZES + MAX_WINDOWS * 8)) {
            if let Some(f) = self.freeze_at(t) {
                t = f.end;
            } else if !self.in_a_window(t) {
                t = self.windows.iter().filter_map(|w| w.next_start_after(t)).min()?;
            } else {
                return Some(t);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_one_approval_and_forbid_self_approval() {
        let p = EnvironmentPolicy::defaults("qa");
        assert_eq!((p.required_approvals, p.allow_self_approval, p.revision), (1, false, 0));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn the_etag_changes_with_the_revision_and_the_environment() {
        let mut p = EnvironmentPolicy::defaults("qa");
        let first = p.etag();
        p.revision += 1;
        assert_ne!(p.etag(), first);
        assert_ne!(EnvironmentPolicy::defaults("prod").etag(), first);
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Weekdays 09:00-17:00 at UTC+1.
    fn office_hours() -> EnvironmentPolicy {
        let days = vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri];
        let window = Window { days, start_minute: 9 * 60, end_minute: 17 * 60, utc_offset_minutes: 60 };
        EnvironmentPolicy { windows: vec![window], ..EnvironmentPolicy::defaults("prod") }
    }

    #[test]
    fn without_windows_or_freezes_it_is_always_open() {
        assert_eq!(EnvironmentPolicy::defaults("qa").closed_at(at("2026-12-05T03:00:00Z")), None);
    }

    #[test]
    fn windows_open_on_their_days_and_hours_in_their_offset() {
        let p = office_hours();
        // Tuesday 2026-12-01 10:00 at UTC+1 is 09:00 UTC.
        assert_eq!(p.closed_at(at("2026-12-01T09:00:00Z")), None);
        let evening = p.closed_at(at("2026-12-01T16:30:00Z")).unwrap();
        assert_eq!(evening.opens, Some(at("2026-12-02T08:00:00Z")), "Wednesday 09:00 at UTC+1");
        let saturday = p.closed_at(at("2026-12-05T10:00:00Z")).unwrap();
        assert_eq!(saturday.opens, Some(at("2026-12-07T08:00:00Z")), "Monday 09:00 at UTC+1");
        assert_eq!(saturday.reason, "outside the promotion windows");
    }

    #[test]
    fn a_freeze_closes_whatever_the_windows_say_and_names_the_next_opening_after_it() {
        let mut p = office_hours();
        let reason = "year-end".to_string();
        p.freezes.push(Freeze { start: at("2026-12-01T00:00:00Z"), end: at("2026-12-04T12:00:00Z"), reason });
        let frozen = p.closed_at(at("2026-12-02T10:00:00Z")).unwrap();
        assert_eq!(frozen.reason, "frozen: year-end");
        assert_eq!(frozen.opens, Some(at("2026-12-04T12:00:00Z")), "Friday 13:00 at UTC+1 is inside the window");
        p.freezes[0].end = at("2026-12-04T20:00:00Z");
        let frozen = p.closed_at(at("2026-12-02T10:00:00Z")).unwrap();
        assert_eq!(frozen.opens, Some(at("2026-12-07T08:00:00Z")), "after the freeze, the next window start");
    }

    #[test]
    fn malformed_windows_and_freezes_are_refused() {
        let mut p = office_hours();
        p.windows[0].end_minute = p.windows[0].start_minute;
        assert!(p.validate().is_err());
        let mut p = office_hours();
        p.windows[0].days.clear();
        assert!(p.validate().is_err());
        let mut p = EnvironmentPolicy::defaults("prod");
        let t = at("2026-12-01T00:00:00Z");
        p.freezes.push(Freeze { start: t, end: t, reason: "x".into() });
        assert!(p.validate().is_err());
        p.freezes[0].end = at("2026-12-02T00:00:00Z");
        p.freezes[0].reason = " ".into();
        assert!(p.validate().is_err(), "a freeze says why");
    }

    #[test]
    fn required_approvals_is_bounded() {
        for (n, ok) in [(0, false), (1, true), (MAX_REQUIRED_APPROVALS, true), (MAX_REQUIRED_APPROVALS + 1, false)] {
            let p = EnvironmentPolicy { required_approvals: n, ..EnvironmentPolicy::defaults("qa") };
            assert_eq!(p.validate().is_ok(), ok, "{n}");
        }
    }
}
