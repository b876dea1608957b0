//! Reading the `.env` file that legacy HMAC secrets are imported from.
//!
//! The file was written for the application's own loader (Node's `dotenv`,
//! which `@nestjs/config` uses), so it is read with that loader's rules and
//! no others: the secret must be byte for byte the one the application
//! signed with. In particular nothing is expanded: `dotenvy`, the Rust
//! crate, substitutes `$NAME` in unquoted and double-quoted values, which
//! would import a different secret from one containing `$`. The rules:
//!
//! - `NAME=value` or `NAME = value`, optionally after `export `; names are
//!   letters, digits, `_`, `.` and `-`;
//! - blank lines and lines starting with `#` are skipped;
//! - an unquoted value ends at `#` and is trimmed;
//! - a value in single quotes or backticks is taken as written; in double
//!   quotes, `\n` and `\r` become a newline and a carriage return;
//! - a later line for the same name wins.
//!
//! Errors name the file and line, never its contents (a line may hold a
//! secret).

use std::collections::HashMap;
use std::path::Path;

use zeroize::Zeroizing;

/// The variables of a `.env` file; values zeroized on drop.
pub(super) struct DotEnv {
    vars: HashMap<String, Zeroizing<String>>,
}

impl DotEnv {
    /// Reads and parses `path`.
    pub(super) fn read(path: &Path) -> Result<DotEnv, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        DotEnv::parse(&text)
            .map_err(|(line, why)| format!("{}, line {line}: {why}", path.display()))
    }

    fn parse(text: &str) -> Result<DotEnv, (usize, String)> {
        let mut vars = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line
                .strip_prefix("export")
                .filter(|rest| rest.starts_with([' ', '\t']))
                .map_or(line, str::trim_start);
            let Some((name, value)) = line.split_once('=') else {
                return Err((n, "not NAME=value".into()));
            };
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err((n, "the name is not letters, digits, '_', '.' or '-'".into()));
            }
            let value = unquote(value.trim()).map_err(|why| (n, why))?;
            vars.insert(name.to_owned(), value);
        }
        Ok(DotEnv { vars })
    }

    /// The value of `name`, if the file sets it.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.as_str())
    }
}

fn unquote(value: &str) -> Result<Zeroizing<String>, String> {
    let Some(quote) = value
        .chars()
        .next()
        .filter(|c| matches!(c, '\'' | '"' | '`'))
    else {
        // Unquoted: up to a comment.
        let end = value.find('#').unwrap_or(value.len());
        return Ok(Zeroizing::new(value[..end].trim_end().to_owned()));
    };
    let rest = &value[1..];
    // The first closing quote that is not escaped with a backslash.
    let mut escaped = false;
    let close = rest.char_indices().find_map(|(i, c)| {
        let found = c == quote && !escaped;
        escaped = c == '\\' && !escaped;
        found.then_some(i)
    });
    let Some(close) = close else {
        return Err(format!(
            "the value opens a {quote} quote and does not close it"
        ));
    };
    let after = rest[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!("text after the closing {quote} quote"));
    }
    let inner = &rest[..close];
    Ok(Zeroizing::new(if quote == '"' {
        inner.replace("\\n", "\n").replace("\\r", "\r")
    } else {
        inner.to_owned()
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn the_application_loaders_rules_and_no_expansion() {
        let env = DotEnv::parse(
            "# secrets\n\
             ACCESS_TOKEN_SECRET_1=plain value   # a comment\n\
             export ACCESS_TOKEN_SECRET_0 = 'single $HOME # kept' # it's last month's\n\
             ESCAPED=\"a \\\"quoted\\\" word\"\n\
             REFRESH=\"double\\nline $PATH\"\n\
             TICK=`back'tick\"`\n\
             EMPTY=\n\
             \n\
             DUP=first\n\
             DUP=second\n\
             export=a key named export\n\
             dotted.name-1=x\n",
        )
        .unwrap();
        assert_eq!(env.get("ACCESS_TOKEN_SECRET_1"), Some("plain value"));
        assert_eq!(
            env.get("ACCESS_TOKEN_SECRET_0"),
            Some("single $HOME # kept")
        );
        assert_eq!(env.get("REFRESH"), Some("double\nline $PATH"));
        assert_eq!(env.get("TICK"), Some("back'tick\""));
        assert_eq!(env.get("ESCAPED"), Some("a \\\"quoted\\\" word"));
        assert_eq!(env.get("EMPTY"), Some(""));
        assert_eq!(env.get("DUP"), Some("second"));
        assert_eq!(env.get("export"), Some("a key named export"));
        assert_eq!(env.get("dotted.name-1"), Some("x"));
        assert_eq!(env.get("MISSING"), None);
    }

    #[test]
    fn bad_lines_name_their_number_and_never_their_text() {
        for (text, line, says) in [
            ("A=1\nthis is not a variable\n", 2, "not NAME=value"),
            ("A=1\n\nB='unterminated secret\n", 3, "does not close"),
            ("B=\"x\" trailing-secret\n", 1, "after the closing"),
            ("BAD NAME=secret\n", 1, "the name"),
            ("=secret\n", 1, "the name"),
        ] {
            let (n, why) = DotEnv::parse(text).err().unwrap();
            assert_eq!(n, line, "{text:?}");
            assert!(why.contains(says), "{text:?}: {why}");
            assert!(!why.contains("secret"), "the text leaked: {why}");
        }
    }
}
