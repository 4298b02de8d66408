//! YAML text to a small tree whose every node knows its line.
//!
//! The event parser of `yaml-rust2` gives positions; its own document type does not, and
//! serde would lose them too. So the events are folded here, with an explicit stack (a file
//! nested thousands deep must not overflow ours), into scalars, sequences and mappings whose
//! keys keep their order and lines. What a scenario never needs and a reader could be fooled
//! by is refused: anchors and aliases (a value would appear where it is not written), tags,
//! duplicate keys (YAML libraries disagree on which one wins) and more than one document.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use crate::Problem;

/// Deepest nesting a scenario may have: the format itself needs four levels.
const MAX_DEPTH: usize = 32;

/// One value of the file and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// From 1.
    pub(crate) line: u32,
    pub(crate) value: Value,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Text as written; `quoted` tells `"null"` from `null`.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A key of a mapping, its line, and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) line: u32,
    pub(crate) value: Node,
}

impl Node {
    /// An empty value (`key:` with nothing after it, `~`, `null`): treated as left out.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The text of a scalar.
    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// What kind of value this is, for "expected …, got …" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Scalar { text, .. } if self.is_null() && text.is_empty() => "nothing".into(),
            Value::Scalar { text, .. } => format!("`{}`", shorten(text)),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

/// A value cut to a length that fits in a message.
pub(crate) fn shorten(text: &str) -> String {
    const LONGEST: usize = 40;
    match text.char_indices().nth(LONGEST) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A collection being built.
enum Frame {
    Seq {
        line: u32,
        items: Vec<Node>,
        /// Where a flow sequence (`[`) opened, to say so when it is never closed.
        flow: Option<u32>,
    },
    Map {
        line: u32,
        entries: Vec<Entry>,
        key: Option<(String, u32)>,
        flow: Option<u32>,
    },
}

/// The tree of `source`, or the problems that stop it being read. Problems that leave the
/// structure whole (a duplicate key, an alias) come back beside the tree, so that the
/// scenario's own problems are still found.
pub(crate) fn load(source: &str) -> Result<(Option<Node>, Vec<Problem>), Vec<Problem>> {
    let mut builder = Builder {
        source,
        stack: Vec::new(),
        root: None,
        problems: Vec::new(),
        documents: 0,
        last_line: 1,
    };
    let mut parser = Parser::new_from_str(source);
    loop {
        match parser.next_token() {
            Ok((event, mark)) => {
                let line = u32::try_from(mark.line()).unwrap_or(u32::MAX).max(1);
                let col = mark.col();
                match builder.event(event, line, col) {
                    Step::Go => {}
                    Step::Done => break,
                    Step::Stop(problem) => return Err(vec![problem]),
                }
            }
            Err(error) => {
                let line = u32::try_from(error.marker().line())
                    .unwrap_or(u32::MAX)
                    .max(1);
                let mut message = format!("malformed YAML: {}", error.info());
                if let Some(open) = builder.open_flow() {
                    message.push_str(&format!(" (the {open} is still open)"));
                }
                return Err(vec![Problem {
                    line,
                    field: builder.path(),
                    message,
                }]);
            }
        }
    }
    Ok((builder.root, builder.problems))
}

enum Step {
    Go,
    Done,
    Stop(Problem),
}

struct Builder<'s> {
    source: &'s str,
    stack: Vec<Frame>,
    root: Option<Node>,
    problems: Vec<Problem>,
    documents: u32,
    /// The line of the last event: where an empty value is (the parser marks it at the next
    /// token, which may be lines further down).
    last_line: u32,
}

impl Builder<'_> {
    fn event(&mut self, event: Event, line: u32, col: usize) -> Step {
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Step::Done,
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Step::Stop(Problem {
                        line,
                        field: String::new(),
                        message: "a scenario file holds one YAML document; remove the `---` \
                                  and what follows it, or split the file"
                            .into(),
                    });
                }
            }
            Event::Alias(_) => {
                self.problem(
                    line,
                    "aliases (`*name`) are not supported in scenario files; write the value out"
                        .into(),
                );
                let node = Node {
                    line,
                    value: Value::Scalar {
                        text: String::new(),
                        quoted: false,
                    },
                };
                self.value(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.refuse_decorations(line, anchor, tag.is_some());
                let quoted = !matches!(style, TScalarStyle::Plain);
                let mut line = line;
                if !quoted && text.is_empty() {
                    line = self.last_line;
                }
                self.value(Node {
                    line,
                    value: Value::Scalar { text, quoted },
                });
            }
            Event::SequenceStart(anchor, tag) => {
                self.refuse_decorations(line, anchor, tag.is_some());
                let flow = self.opens_with(line, col, '[');
                self.stack.push(Frame::Seq {
                    line,
                    items: Vec::new(),
                    flow,
                });
                if self.stack.len() > MAX_DEPTH {
                    return self.too_deep(line);
                }
            }
            Event::MappingStart(anchor, tag) => {
                self.refuse_decorations(line, anchor, tag.is_some());
                let flow = self.opens_with(line, col, '{');
                self.stack.push(Frame::Map {
                    line,
                    entries: Vec::new(),
                    key: None,
                    flow,
                });
                if self.stack.len() > MAX_DEPTH {
                    return self.too_deep(line);
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { line, items, .. }) = self.stack.pop() {
                    // A block sequence's mark is its first `-`; nothing earlier to prefer.
                    self.value(Node {
                        line,
                        value: Value::Seq(items),
                    });
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { line, entries, .. }) = self.stack.pop() {
                    // A block mapping's mark can fall on its first value, which may sit lines
                    // below the first key: the mapping starts at whichever comes first.
                    let line = entries.first().map_or(line, |e| e.line.min(line));
                    self.value(Node {
                        line,
                        value: Value::Map(entries),
                    });
                }
            }
        }
        self.last_line = line;
        Step::Go
    }

    /// Places a finished node: the root, an item, a key or a key's value.
    fn value(&mut self, node: Node) {
        let path = self.path();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = match &node.value {
                        Value::Scalar { text, .. } => text.clone(),
                        _ => {
                            self.problems.push(Problem {
                                line: node.line,
                                field: path,
                                message: "a key must be plain text, not a list or a mapping".into(),
                            });
                            String::new()
                        }
                    };
                    *key = Some((text, node.line));
                }
                Some((text, key_line)) => {
                    let mut node = node;
                    if node.is_null() {
                        // An empty value is marked where the next token is; its key is
                        // where the reader looks.
                        node.line = key_line;
                    }
                    if let Some(first) = entries.iter().find(|e| e.key == text) {
                        let message = format!(
                            "duplicate key `{}` (first on line {}); give each key once",
                            shorten(&text),
                            first.line
                        );
                        // The path already ends with this key.
                        self.problems.push(Problem {
                            line: key_line,
                            field: path,
                            message,
                        });
                    } else {
                        entries.push(Entry {
                            key: text,
                            line: key_line,
                            value: node,
                        });
                    }
                }
            },
        }
    }

    fn refuse_decorations(&mut self, line: u32, anchor: usize, tag: bool) {
        if anchor != 0 {
            self.problem(
                line,
                "anchors (`&name`) are not supported in scenario files; write each value out"
                    .into(),
            );
        }
        if tag {
            self.problem(
                line,
                "tags (`!name`, `!!str`) are not supported in scenario files; remove the tag"
                    .into(),
            );
        }
    }

    fn problem(&mut self, line: u32, message: String) {
        let field = self.path();
        self.problems.push(Problem {
            line,
            field,
            message,
        });
    }

    fn too_deep(&self, line: u32) -> Step {
        Step::Stop(Problem {
            line,
            field: self.path(),
            message: format!("nested deeper than {MAX_DEPTH} levels; a scenario needs far fewer"),
        })
    }

    /// Whether the collection marked at (`line`, `col`) opens with `bracket`, i.e. is a flow
    /// collection; then its line.
    fn opens_with(&self, line: u32, col: usize, bracket: char) -> Option<u32> {
        let text = self.source.lines().nth(line as usize - 1)?;
        (text.chars().nth(col)? == bracket).then_some(line)
    }

    /// The innermost flow collection still open, as "`[` on line 9".
    fn open_flow(&self) -> Option<String> {
        self.stack.iter().rev().find_map(|frame| match frame {
            Frame::Seq {
                flow: Some(line), ..
            } => Some(format!("`[` on line {line}")),
            Frame::Map {
                flow: Some(line), ..
            } => Some(format!("`{{` on line {line}")),
            _ => None,
        })
    }

    /// The field being built: "faults[1].servers".
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Frame::Map {
                    key: Some((key, _)),
                    ..
                } => path = join(&path, key),
                Frame::Map { .. } => {}
            }
        }
        path
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(source: &str) -> Node {
        let (node, problems) = load(source).expect("parses");
        assert!(problems.is_empty(), "{problems:?}");
        node.expect("a document")
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a mapping: {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_their_lines() {
        let root =
            tree("a: 1\nb:\n  c: x\n  d: [1,\n    2]\ne:\n- {f: g}\n-   h: i\n    j: k\nl:\n");
        let top = entries(&root);
        assert_eq!(
            top.iter()
                .map(|e| (e.key.as_str(), e.line))
                .collect::<Vec<_>>(),
            [("a", 1), ("b", 2), ("e", 6), ("l", 10)]
        );
        assert_eq!(top[1].value.line, 3);
        let d = &entries(&top[1].value)[1].value;
        let Value::Seq(items) = &d.value else {
            panic!()
        };
        assert_eq!((d.line, items[0].line, items[1].line), (4, 4, 5));
        let Value::Seq(items) = &top[2].value.value else {
            panic!()
        };
        assert_eq!((items[0].line, items[1].line), (7, 8));
        assert!(top[3].value.is_null());
        assert_eq!(top[3].value.line, 10);
    }

    #[test]
    fn what_could_mislead_is_refused() {
        let (_, problems) = load("a: &x 1\nb: *x\nc: !!str 5\nc: 2\n").unwrap();
        let lines: Vec<_> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(lines, [(1, "a"), (2, "b"), (3, "c"), (4, "c")]);
        assert!(problems[3].message.contains("first on line 3"));
        let stop = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(stop[0].line, 2);
    }

    #[test]
    fn syntax_errors_name_the_line_and_the_open_bracket() {
        let problems = load("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 3);
        assert!(problems[0].field.starts_with("b["), "{:?}", problems[0]);
        assert!(
            problems[0].message.contains("`[` on line 2"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn deep_nesting_stops_early_without_recursion() {
        let deep = "- ".repeat(20_000) + "x\n";
        let problems = load(&deep).unwrap_err();
        assert!(problems[0].message.contains("nested deeper"));
        let deep = "[".repeat(20_000);
        assert!(load(&deep).is_err());
    }
}
