//! What a Node.js parent handed to this process with `shareWith(regions, spawnOptions)`: the
//! `SHMKIT_INHERITED` environment variable, a JSON array with one entry per region or
//! semaphore, in the order the parent gave them. The format is written down in
//! `docs/layout.md` ("Handing regions to a spawned process").
use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Result};

/// The environment variable that carries the list.
pub const INHERITED_ENV: &str = "SHMKIT_INHERITED";

/// One region or semaphore handed over by the parent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inherited {
  /// An fd-backed region (memfd, or one the parent mapped from a descriptor): this process's
  /// descriptor `fd` (from 3 up). Map it with [`crate::Region::from_fd`] (borrow it with
  /// [`crate::borrow_fd`]), then close it: it was handed over to be consumed.
  Memfd {
    /// The descriptor number in this process.
    fd: RawFd,
    /// Whether the parent handed it over read-only (map it copy-on-write).
    read_only: bool,
  },
  /// A named POSIX shared-memory object: [`crate::Region::open_with`].
  Named {
    /// The name, with its leading `/`.
    name: String,
    /// Whether the parent handed it over read-only.
    read_only: bool,
  },
  /// A regular file mapping: [`crate::Region::file_with`] without creating.
  File {
    /// The path of the file.
    path: PathBuf,
    /// Whether the parent handed it over read-only.
    read_only: bool,
  },
  /// A named semaphore: [`crate::Semaphore::open`].
  Semaphore {
    /// The name, with its leading `/`.
    name: String,
  },
}

/// Reads [`INHERITED_ENV`]: what the parent handed over, in order, or an empty list when the
/// variable is not set. Nothing is mapped or closed, and the variable stays set.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] when the variable is not valid UTF-8 or not in the format.
pub fn inherited() -> Result<Vec<Inherited>> {
  match std::env::var(INHERITED_ENV) {
    Ok(text) => parse_inherited(&text),
    Err(std::env::VarError::NotPresent) => Ok(Vec::new()),
    Err(std::env::VarError::NotUnicode(_)) => Err(invalid("not UTF-8")),
  }
}

/// Parses the value of [`INHERITED_ENV`].
///
/// ```
/// use shmkit::{parse_inherited, Inherited};
/// let list = parse_inherited(r#"[{"readOnly":false,"kind":"memfd","fd":3},{"kind":"semaphore","name":"/go"}]"#)?;
/// assert_eq!(list, [Inherited::Memfd { fd: 3, read_only: false }, Inherited::Semaphore { name: "/go".into() }]);
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] for text that is not a JSON array of entries in the format,
/// or an entry of a kind this version does not know.
pub fn parse_inherited(text: &str) -> Result<Vec<Inherited>> {
  let mut parser = json::Parser::new(text);
  let value = parser.value().ok_or_else(|| invalid("not JSON"))?;
  if !parser.at_end() {
    return Err(invalid("not JSON"));
  }
  let json::Value::Array(entries) = value else {
    return Err(invalid("not an array"));
  };
  entries.iter().map(entry).collect()
}

fn entry(value: &json::Value) -> Result<Inherited> {
  let json::Value::Object(fields) = value else {
    return Err(invalid("an entry is not an object"));
  };
  let field = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
  let malformed = |what: &str| invalid(&format!("an entry has no valid {what}"));
  let read_only = match field("readOnly") {
    None | Some(json::Value::Null) => false,
    Some(json::Value::Bool(b)) => *b,
    Some(_) => return Err(malformed("readOnly")),
  };
  let name = || match field("name") {
    Some(json::Value::String(s)) => Ok(s.clone()),
    _ => Err(malformed("name")),
  };
  let Some(json::Value::String(kind)) = field("kind") else {
    return Err(malformed("kind"));
  };
  Ok(match kind.as_str() {
    "memfd" => {
      let fd = match field("fd") {
        Some(json::Value::Number(n)) if n.fract() == 0.0 && (3.0..=f64::from(i32::MAX)).contains(n) => {
          #[expect(clippy::cast_possible_truncation, reason = "an integer in 3..=i32::MAX")]
          let fd = *n as RawFd;
          fd
        }
        _ => return Err(malformed("fd")),
      };
      Inherited::Memfd { fd, read_only }
    }
    "named" => Inherited::Named {
      name: name()?,
      read_only,
    },
    "file" => Inherited::File {
      path: PathBuf::from(name()?),
      read_only,
    },
    "semaphore" => Inherited::Semaphore { name: name()? },
    other => {
      return Err(invalid(&format!(
        "unknown kind '{other}' (was the parent using a newer shmkit?)"
      )))
    }
  })
}

fn invalid(reason: &str) -> Error {
  Error::new(
    ErrorKind::InvalidArgument,
    format!("the environment variable {INHERITED_ENV} is invalid: {reason}"),
  )
}

/// Just enough JSON (RFC 8259) for the list: every value type, strings with all escapes.
mod json {
  pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
  }

  pub struct Parser<'a> {
    text: &'a str,
    at: usize,
  }

  /// Four hex digits of a `\\u` escape.
  fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let hex: String = (0..4).map(|_| chars.next().map(|(_, c)| c)).collect::<Option<_>>()?;
    u32::from_str_radix(&hex, 16).ok()
  }

  /// Nesting deeper than this is refused rather than risking the stack.
  const MAX_DEPTH: usize = 64;

  impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Self {
      Self { text, at: 0 }
    }

    pub fn at_end(&mut self) -> bool {
      self.skip_space();
      self.at == self.text.len()
    }

    pub fn value(&mut self) -> Option<Value> {
      self.nested(0)
    }

    fn rest(&self) -> &'a str {
      &self.text[self.at..]
    }

    fn skip_space(&mut self) {
      let rest = self.rest();
      self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len();
    }

    fn eat(&mut self, token: &str) -> bool {
      self.skip_space();
      let found = self.rest().starts_with(token);
      if found {
        self.at += token.len();
      }
      found
    }

    fn nested(&mut self, depth: usize) -> Option<Value> {
      if depth > MAX_DEPTH {
        return None;
      }
      self.skip_space();
      match self.rest().as_bytes().first()? {
        b'n' => self.eat("null").then_some(Value::Null),
        b't' => self.eat("true").then_some(Value::Bool(true)),
        b'f' => self.eat("false").then_some(Value::Bool(false)),
        b'"' => self.string().map(Value::String),
        b'[' => {
          self.at += 1;
          let mut items = Vec::new();
          if !self.eat("]") {
            loop {
              items.push(self.nested(depth + 1)?);
              if self.eat("]") {
                break;
              }
              self.eat(",").then_some(())?;
            }
          }
          Some(Value::Array(items))
        }
        b'{' => {
          self.at += 1;
          let mut fields = Vec::new();
          if !self.eat("}") {
            loop {
              self.skip_space();
              let key = self.string()?;
              self.eat(":").then_some(())?;
              fields.push((key, self.nested(depth + 1)?));
              if self.eat("}") {
                break;
              }
              self.eat(",").then_some(())?;
            }
          }
          Some(Value::Object(fields))
        }
        _ => self.number().map(Value::Number),
      }
    }

    fn number(&mut self) -> Option<f64> {
      let rest = self.rest();
      let len = rest
        .find(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
        .unwrap_or(rest.len());
      let text = &rest[..len];
      // JSON's grammar is stricter than Rust's float syntax: no leading '+', '.', "inf".
      let digits = text.strip_prefix('-').unwrap_or(text);
      if !digits.starts_with(|c: char| c.is_ascii_digit())
        || (digits.starts_with('0') && digits[1..].starts_with(|c: char| c.is_ascii_digit()))
      {
        return None;
      }
      self.at += len;
      text.parse().ok()
    }

    fn string(&mut self) -> Option<String> {
      let mut chars = self.rest().char_indices();
      if chars.next()?.1 != '"' {
        return None;
      }
      let mut out = String::new();
      loop {
        let (i, c) = chars.next()?;
        match c {
          '"' => {
            self.at += i + 1;
            return Some(out);
          }
          '\\' => {
            let escaped = match chars.next()?.1 {
              '"' => '"',
              '\\' => '\\',
              '/' => '/',
              'b' => '\u{8}',
              'f' => '\u{c}',
              'n' => '\n',
              'r' => '\r',
              't' => '\t',
              'u' => {
                let first = hex4(&mut chars)?;
                let code = if (0xd800..0xdc00).contains(&first) {
                  // A surrogate pair: the low half must follow as another \u escape.
                  (chars.next()?.1 == '\\' && chars.next()?.1 == 'u').then_some(())?;
                  let second = hex4(&mut chars)?;
                  (0xdc00..0xe000).contains(&second).then_some(())?;
                  0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
                } else {
                  first
                };
                char::from_u32(code)?
              }
              _ => return None,
            };
            out.push(escaped);
          }
          c if c < ' ' => return None,
          c => out.push(c),
        }
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_kind_parses_in_order() {
    let text = r#" [ {"readOnly":false,"kind":"memfd","fd":3},
      {"readOnly":true,"kind":"named","name":"/jobs"},
      {"readOnly":false,"kind":"file","name":"/tmp/caf\u00e9 \"x\"\ud83d\ude00"},
      {"kind":"semaphore","name":"/ready","future":[1,{"a":null}]} ] "#;
    assert_eq!(
      parse_inherited(text).unwrap(),
      [
        Inherited::Memfd {
          fd: 3,
          read_only: false
        },
        Inherited::Named {
          name: "/jobs".into(),
          read_only: true
        },
        Inherited::File {
          path: "/tmp/café \"x\"😀".into(),
          read_only: false
        },
        Inherited::Semaphore { name: "/ready".into() },
      ]
    );
    assert_eq!(parse_inherited("[]").unwrap(), []);
  }

  #[test]
  fn malformed_lists_are_refused_with_the_reason() {
    for (text, reason) in [
      ("{not json", "not JSON"),
      ("[1] x", "not JSON"),
      ("[\"a\u{1}\"]", "not JSON"),
      ("[01]", "not JSON"),
      (&"[".repeat(100), "not JSON"),
      ("{}", "not an array"),
      ("[5]", "an entry is not an object"),
      (r#"[{"kind":"teleport"}]"#, "unknown kind 'teleport'"),
      (r#"[{"kind":3}]"#, "no valid kind"),
      (r#"[{"kind":"memfd","fd":2}]"#, "no valid fd"),
      (r#"[{"kind":"memfd","fd":3.5}]"#, "no valid fd"),
      (r#"[{"kind":"named"}]"#, "no valid name"),
      (
        r#"[{"kind":"named","name":"/a","readOnly":"yes"}]"#,
        "no valid readOnly",
      ),
    ] {
      let error = parse_inherited(text).unwrap_err();
      assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{text}");
      assert!(error.to_string().contains(reason), "{text}: {error}");
    }
  }
}
