//! The agent session a request belongs to, and what kind of turn it is, from request headers.
//! Pure: no I/O.
//!
//! A caller may name its session explicitly with `x-weir-session`; that value is validated and a
//! malformed one is an error the client sees. Otherwise the session header the harness itself
//! sends is used, cleaned up rather than rejected: a harness cannot be asked to change.

use http::HeaderMap;

/// The header a caller sets to name its session explicitly.
pub const WEIR_SESSION_HEADER: &str = "x-weir-session";

/// The longest session id kept, in characters.
pub const MAX_SESSION_CHARS: usize = 128;

/// Session headers harnesses send, most specific first (lowercase, as `source` reports them).
/// Codex sends both `session-id` and `thread-id`; for a sub-agent thread `session-id` names the
/// root, so it comes first.
pub const HARNESS_SESSION_HEADERS: &[&str] = &[
    // Claude Code. https://github.com/anthropics/claude-code/issues/40119,
    // https://github.com/routatic/proxy/pull/166 (sent on every /v1/messages request).
    "x-claude-code-session-id",
    // Codex CLI, current: `build_session_headers` inserts `session-id` and `thread-id`
    // (openai/codex codex-rs/codex-api/src/requests/headers.rs at commit
    // d66708232299bdbf373ec55b0d6b938c246cfa60, as linked from a write-up; the stored copy of that
    // file is older). Also https://github.com/KarpelesLab/teamclaude/pull/352.
    "session-id",
    // Codex CLI, earlier: `session_id` (openai/codex codex-rs/codex-api/src/requests/headers.rs,
    // stored commit 546585f878221c955ad33efff34925776893774a) and `conversation_id` with the
    // same value (removed by https://github.com/openai/codex/pull/9107).
    "session_id",
    "conversation_id",
    "thread-id",
    // OpenCode, to its own providers: anomalyco/opencode packages/opencode/src/session/llm.ts.
    "x-opencode-session",
    // Goose: block/goose crates/goose/src/providers/api_client.rs (`goose-session-id`), renamed
    // `agent-session-id` (https://github.com/aaif-goose/goose/pull/6657).
    "goose-session-id",
    "agent-session-id",
    // GitHub Copilot Chat: `VScode-SessionId` (captured in
    // https://github.com/aaamoon/copilot-gpt4-service/issues/183 and
    // https://github.com/lvguanjun/copilot_to_chatgpt4/issues/19). Per
    // https://github.com/microsoft/vscode/issues/325237 it is not sent to BYOK custom endpoints.
    "vscode-sessionid",
    // OpenRouter's sticky-routing session header, which some clients send
    // (https://github.com/aaif-goose/goose/issues/11065 names it).
    "x-session-id",
];

/// A request's agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session id, at most [`MAX_SESSION_CHARS`] characters, no control characters.
    pub id: String,
    /// The header it came from, lowercase.
    pub source: &'static str,
}

/// A session header the client sent that Weir rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `x-weir-session` is not 1 to 128 characters of ASCII letters, digits and `-_.:/`.
    #[error(
        "invalid x-weir-session header: expected 1 to 128 characters of ASCII letters, digits and -_.:/"
    )]
    InvalidWeirSession,
}

/// The session a request belongs to: `x-weir-session` if present (and valid), else the first
/// harness session header with a usable value, else none.
pub fn session(headers: &HeaderMap) -> Result<Option<Session>, SessionError> {
    if let Some(v) = headers.get(WEIR_SESSION_HEADER) {
        let bytes = v.as_bytes();
        let valid = (1..=MAX_SESSION_CHARS).contains(&bytes.len())
            && bytes.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/')
            });
        if !valid {
            return Err(SessionError::InvalidWeirSession);
        }
        return Ok(Some(Session {
            // Checked ASCII above.
            id: String::from_utf8_lossy(bytes).into_owned(),
            source: WEIR_SESSION_HEADER,
        }));
    }
    for &name in HARNESS_SESSION_HEADERS {
        let Some(v) = headers.get(name) else {
            continue;
        };
        let id = clean(v.as_bytes());
        if !id.is_empty() {
            return Ok(Some(Session { id, source: name }));
        }
    }
    Ok(None)
}

/// A harness-sent id made safe to keep: lossy UTF-8, control characters dropped, surrounding
/// whitespace trimmed, capped at [`MAX_SESSION_CHARS`] characters.
fn clean(bytes: &[u8]) -> String {
    // Look at no more than 4 bytes a kept character could take.
    let head = &bytes[..bytes.len().min(MAX_SESSION_CHARS * 4 + 16)];
    String::from_utf8_lossy(head)
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_SESSION_CHARS)
        .collect()
}

/// What kind of turn a request is, when the harness says: `user` or `agent` (GitHub Copilot's
/// `X-Initiator`), or `subagent:<kind>` (Codex's `x-openai-subagent`). A closed set, so it can
/// label metrics: Codex's free-form sub-agent labels become `subagent:other`.
pub fn turn_kind(headers: &HeaderMap) -> Option<&'static str> {
    // Codex: openai/codex codex-rs/codex-api/src/requests/headers.rs (`subagent_header`:
    // review, compact, memory_consolidation, collab_spawn, or a free label) and
    // codex-rs/core/src/client.rs (`x-openai-subagent`).
    if let Some(v) = headers.get("x-openai-subagent") {
        let kind = match v.to_str().unwrap_or("").trim() {
            "" => return None,
            "review" => "subagent:review",
            "compact" => "subagent:compact",
            "memory_consolidation" => "subagent:memory_consolidation",
            "collab_spawn" => "subagent:collab_spawn",
            _ => "subagent:other",
        };
        return Some(kind);
    }
    // GitHub Copilot: microsoft/vscode-copilot-chat src/platform/openai/node/fetch.ts
    // (`'X-Initiator': userInitiatedRequest ? 'user' : 'agent'`).
    let v = headers.get("x-initiator")?.to_str().ok()?.trim();
    if v.eq_ignore_ascii_case("user") {
        Some("user")
    } else if v.eq_ignore_ascii_case("agent") {
        Some("agent")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    struct Case {
        name: &'static str,
        headers: &'static [(&'static str, &'static str)],
        session: Result<Option<(&'static str, &'static str)>, SessionError>,
        turn: Option<&'static str>,
    }

    const CASES: &[Case] = &[
        // Source: Chapoly1305/claude-relay-service src/services/claudeCodeHeadersService.js
        // (Claude Code's header set) plus X-Claude-Code-Session-Id
        // (https://github.com/anthropics/claude-code/issues/40119).
        Case {
            name: "claude code",
            headers: &[
                ("user-agent", "claude-cli/2.1.7 (external, cli)"),
                ("x-app", "cli"),
                ("anthropic-version", "2023-06-01"),
                (
                    "X-Claude-Code-Session-Id",
                    "0b6f7c2e-6a0f-4f59-9a53-5e0f3d1b2a11",
                ),
            ],
            session: Ok(Some((
                "0b6f7c2e-6a0f-4f59-9a53-5e0f3d1b2a11",
                "x-claude-code-session-id",
            ))),
            turn: None,
        },
        // Source: a captured Codex request (originator `codex_cli_rs`, `conversation_id` and
        // `session_id` carrying the same UUID) quoted in a "伪装 User-Agent 调研" document the
        // index returned without its repository; header names confirmed in openai/codex
        // codex-rs/core/src/client.rs (`.header("conversation_id", …)`, `.header("session_id", …)`
        // in earlier versions) and codex-rs/codex-api/src/requests/headers.rs.
        Case {
            name: "codex, legacy headers",
            headers: &[
                (
                    "user-agent",
                    "codex_cli_rs/0.38.0 (Ubuntu 24.04.2 LTS; x86_64) WindowsTerminal",
                ),
                ("originator", "codex_cli_rs"),
                ("conversation_id", "8f1f0b18-2fb3-4c24-9a9a-000000000000"),
                ("session_id", "8f1f0b18-2fb3-4c24-9a9a-000000000000"),
            ],
            session: Ok(Some(("8f1f0b18-2fb3-4c24-9a9a-000000000000", "session_id"))),
            turn: None,
        },
        // Source: Codex's current `session-id` / `thread-id` (openai/codex
        // codex-rs/codex-api/src/requests/headers.rs `build_session_headers`, commit d667082 as
        // linked from a write-up; https://github.com/justrach/codegraff2/pull/85) and its
        // sub-agent header `x-openai-subagent: review` (codex-rs/core/src/client.rs,
        // codex-rs/codex-api/src/requests/headers.rs `subagent_header`). For a spawned thread
        // `session-id` is the root and `thread-id` the child.
        Case {
            name: "codex, current headers, review sub-agent",
            headers: &[
                ("originator", "codex_cli_rs"),
                ("session-id", "019a9544-7ab1-73c1-837e-1fa681f4462b"),
                ("thread-id", "019a9544-9c1d-7d02-a3f1-5b8e2c7d9e10"),
                ("x-openai-subagent", "review"),
            ],
            session: Ok(Some(("019a9544-7ab1-73c1-837e-1fa681f4462b", "session-id"))),
            turn: Some("subagent:review"),
        },
        // Source: same `subagent_header` (`Compact => "compact"`).
        Case {
            name: "codex, compaction",
            headers: &[
                ("session_id", "8f1f0b18-2fb3-4c24-9a9a-000000000000"),
                ("x-openai-subagent", "compact"),
            ],
            session: Ok(Some(("8f1f0b18-2fb3-4c24-9a9a-000000000000", "session_id"))),
            turn: Some("subagent:compact"),
        },
        // Source: same (`ThreadSpawn { .. } => "collab_spawn"`, `Other(label) => label`).
        Case {
            name: "codex, spawned thread and a free label",
            headers: &[("x-openai-subagent", "my-custom-task")],
            session: Ok(None),
            turn: Some("subagent:other"),
        },
        // Source: anomalyco/opencode packages/opencode/src/session/llm.ts
        // (`x-opencode-session: input.sessionID`, ids like `ses_…`).
        Case {
            name: "opencode",
            headers: &[
                ("x-opencode-project", "prj_01"),
                ("x-opencode-session", "ses_5f2a9c81effeQmZ3"),
                ("x-opencode-request", "msg_01"),
                ("x-opencode-client", "cli"),
            ],
            session: Ok(Some(("ses_5f2a9c81effeQmZ3", "x-opencode-session"))),
            turn: None,
        },
        // Source: block/goose crates/goose/src/providers/api_client.rs (`goose-session-id`);
        // id format `20260809_29` from https://github.com/aaif-goose/goose/pull/11373.
        Case {
            name: "goose",
            headers: &[("goose-session-id", "20260809_29")],
            session: Ok(Some(("20260809_29", "goose-session-id"))),
            turn: None,
        },
        // Source: https://github.com/aaif-goose/goose/pull/6657 (`agent-session-id`).
        Case {
            name: "goose, renamed header",
            headers: &[("agent-session-id", "20260809_29")],
            session: Ok(Some(("20260809_29", "agent-session-id"))),
            turn: None,
        },
        // Source: https://github.com/lvguanjun/copilot_to_chatgpt4/issues/19 (captured Copilot
        // request, `vscode-sessionid: <uuid><13-digit ms>`) and microsoft/vscode-copilot-chat
        // src/platform/openai/node/fetch.ts (`X-Initiator`).
        Case {
            name: "github copilot, user turn",
            headers: &[
                ("user-agent", "GitHubCopilotChat/0.12.2"),
                ("copilot-integration-id", "vscode-chat"),
                (
                    "vscode-sessionid",
                    "99eb5d78-72c2-4cb1-8e34-cc7a411790641709378364352",
                ),
                ("x-initiator", "user"),
            ],
            session: Ok(Some((
                "99eb5d78-72c2-4cb1-8e34-cc7a411790641709378364352",
                "vscode-sessionid",
            ))),
            turn: Some("user"),
        },
        // Source: same fetch.ts (`'agent'` for a system request / tool loop iteration).
        Case {
            name: "github copilot, agent turn",
            headers: &[("X-Initiator", "agent")],
            session: Ok(None),
            turn: Some("agent"),
        },
        Case {
            name: "unknown initiator",
            headers: &[("x-initiator", "web")],
            session: Ok(None),
            turn: None,
        },
        Case {
            name: "explicit session wins over the harness's",
            headers: &[
                ("x-weir-session", "team-a/run:42.b_c-d"),
                ("x-claude-code-session-id", "0b6f7c2e"),
            ],
            session: Ok(Some(("team-a/run:42.b_c-d", "x-weir-session"))),
            turn: None,
        },
        Case {
            name: "explicit session with a space",
            headers: &[("x-weir-session", "a b")],
            session: Err(SessionError::InvalidWeirSession),
            turn: None,
        },
        Case {
            name: "explicit session empty",
            headers: &[("x-weir-session", "")],
            session: Err(SessionError::InvalidWeirSession),
            turn: None,
        },
        Case {
            name: "harness id with a tab is cleaned",
            headers: &[("session_id", " abc\tdef ")],
            session: Ok(Some(("abcdef", "session_id"))),
            turn: None,
        },
        Case {
            name: "blank harness id falls through to the next header",
            headers: &[("x-claude-code-session-id", "   "), ("session-id", "s1")],
            session: Ok(Some(("s1", "session-id"))),
            turn: None,
        },
        Case {
            name: "no signal",
            headers: &[("user-agent", "curl/8.5.0")],
            session: Ok(None),
            turn: None,
        },
    ];

    #[test]
    fn table() {
        for case in CASES {
            let h = headers(case.headers);
            let got = session(&h).map(|s| s.map(|s| (s.id, s.source)));
            let want = case
                .session
                .map(|s| s.map(|(id, source)| (id.to_string(), source)));
            assert_eq!(got, want, "{}", case.name);
            assert_eq!(turn_kind(&h), case.turn, "{}", case.name);
        }
    }

    #[test]
    fn explicit_session_limits() {
        let ok = "a".repeat(128);
        let got = session(&headers(&[("x-weir-session", ok.as_str())])).unwrap();
        assert_eq!(got.unwrap().id, ok);
        let long = "a".repeat(129);
        let got = session(&headers(&[("x-weir-session", long.as_str())]));
        assert_eq!(got, Err(SessionError::InvalidWeirSession));
        let mut h = HeaderMap::new();
        h.insert(
            WEIR_SESSION_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(session(&h), Err(SessionError::InvalidWeirSession));
    }

    #[test]
    fn error_names_the_header() {
        assert!(SessionError::InvalidWeirSession
            .to_string()
            .contains("x-weir-session"));
    }

    #[test]
    fn harness_ids_are_capped_and_lossy() {
        let long = "z".repeat(10 * 1024);
        let got = session(&headers(&[("session-id", long.as_str())]))
            .unwrap()
            .unwrap();
        assert_eq!(got.id.chars().count(), MAX_SESSION_CHARS);

        let mut h = HeaderMap::new();
        h.insert(
            "thread-id",
            HeaderValue::from_bytes(b"\xff\xfeid\x80").unwrap(),
        );
        let got = session(&h).unwrap().unwrap();
        assert!(got.id.contains("id"));
        assert!(got.id.chars().count() <= MAX_SESSION_CHARS);
        assert!(!got.id.chars().any(char::is_control));
    }

    #[test]
    fn harness_headers_are_lowercase_and_distinct() {
        for name in HARNESS_SESSION_HEADERS {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(HeaderName::from_bytes(name.as_bytes()).is_ok());
        }
        let mut names = HARNESS_SESSION_HEADERS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HARNESS_SESSION_HEADERS.len());
    }
}
