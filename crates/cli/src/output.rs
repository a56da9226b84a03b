//! What a command prints: JSON for scripts (`--json`), or tables and lines for people.
//!
//! The choice is made here only. A command hands its answer to [`Output`] with the way people
//! should see it; with `--json` the answer is printed as pretty JSON instead, exactly as the
//! head node's views serialize.

use anyhow::Result;
use serde::Serialize;
use std::fmt::Display;

/// How this run prints: for people, or as JSON.
#[derive(Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Whether people read the output (progress is drawn for them only).
    pub fn for_people(self) -> bool {
        !self.json
    }

    /// One answer: as JSON, or as `text` prints it.
    pub fn one<T: Serialize + ?Sized>(self, value: &T, text: impl FnOnce(&T)) {
        if self.json {
            json(value);
        } else {
            text(value);
        }
    }

    /// A list: a JSON array, or a table of `headers` with `row` of each item.
    pub fn list<T: Serialize>(self, items: &[T], headers: &[&str], row: impl Fn(&T) -> Vec<String>) {
        self.one(items, |items| crate::show::table(headers, items.iter().map(row).collect()));
    }

    /// A line for people; nothing with `--json`.
    pub fn note(self, text: impl Display) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Lines for people that take more work to write (another request); nothing with `--json`.
    pub fn people(self, text: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.json { Ok(()) } else { text() }
    }
}

fn json(value: &(impl Serialize + ?Sized)) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values print"));
}
