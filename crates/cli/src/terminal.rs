//! What reaches a terminal or a log: untrusted text never prints raw.
//!
//! Names and fields come from other users and from unauthenticated peers. Everything the head
//! node answers is escaped before the CLI shows it (unless `--json`, whose encoding escapes
//! control characters itself), and every log line is written with its control characters spelled
//! out, so a newline cannot forge a log line and an escape code cannot repaint a terminal.

use serde_json::Value;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use thunderhead_core::text::escape;

/// Whether answers are escaped for people (`false` with `--json`).
static FOR_PEOPLE: AtomicBool = AtomicBool::new(true);

pub fn set_for_people(on: bool) {
    FOR_PEOPLE.store(on, Ordering::Relaxed);
}

/// Escapes every string of an answer from the head node for display. A task's output
/// (`stdout`, `stderr`) keeps its lines and tabs, and only on a terminal are its other control
/// characters spelled out: redirected to a file it stays as the task wrote it.
pub fn for_display(value: &mut Value) {
    use std::io::IsTerminal;
    if FOR_PEOPLE.load(Ordering::Relaxed) {
        escape_value(value, Field::Text, std::io::stdout().is_terminal());
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Text,
    Output,
}

fn escape_value(value: &mut Value, field: Field, terminal: bool) {
    match value {
        Value::String(s) => {
            let escaped = match field {
                Field::Text => escape(s).into_owned(),
                Field::Output if terminal => escape_output(s),
                Field::Output => return,
            };
            if escaped != *s {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| escape_value(v, field, terminal)),
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                let field = if key == "stdout" || key == "stderr" { Field::Output } else { field };
                escape_value(v, field, terminal);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Task output as a terminal shows it: lines and tabs kept, other control characters spelled out.
pub fn escape_output(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (body, end) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
            let parts: Vec<String> = body.split('\t').map(|p| escape(p).into_owned()).collect();
            parts.join("\t") + end
        })
        .collect()
}

/// A log writer that spells out control characters in each record but its closing newline.
pub struct LogWriter<W>(pub W);

impl<W: Write> Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = text.strip_suffix('\n').map_or((&*text, ""), |b| (b, "\n"));
        self.0.write_all(escape(body).as_bytes())?;
        self.0.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Ends the process quietly when the reader of its output went away (`thunderhead node list |
/// head -1`), as a command-line tool should, instead of reporting a panic; reports any other
/// panic on one escaped line (its message may quote input), with a backtrace when
/// `RUST_BACKTRACE` asks for one.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        let thread = std::thread::current();
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "thread '{}' panicked at {place}: {}",
            escape(thread.name().unwrap_or("<unnamed>")),
            escape(message)
        );
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(err, "{backtrace}");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_escaped_for_people_but_output_keeps_its_lines() {
        let mut v = serde_json::json!({
            "name": "evil\n\u{1b}[2J",
            "tasks": [{"message": "a\rb"}],
            "output": {"stdout": "line 1\n\tline 2\u{1b}[31m\n"},
        });
        escape_value(&mut v, Field::Text, true);
        assert_eq!(v["name"], "evil\\n\\u{1b}[2J");
        assert_eq!(v["tasks"][0]["message"], "a\\rb");
        assert_eq!(v["output"]["stdout"], "line 1\n\tline 2\\u{1b}[31m\n");
        let mut piped = serde_json::json!({"stdout": "raw\u{1b}[31m"});
        escape_value(&mut piped, Field::Text, false);
        assert_eq!(piped["stdout"], "raw\u{1b}[31m", "output written to a file stays as it was");
    }

    #[test]
    fn a_log_record_is_one_line_whatever_it_holds() {
        let mut out = LogWriter(Vec::new());
        out.write_all(b"WARN agent refused node=x\n2026 INFO forged\x1b[0m\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), "WARN agent refused node=x\\n2026 INFO forged\\u{1b}[0m\n");
    }
}
