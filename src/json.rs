//! A small JSON reader: just enough for POST policies and, next, cache metadata (objects,
//! arrays, strings with escapes, numbers, booleans, null), with a nesting limit. No JSON
//! crate is on the dependency list, and the documents are tiny. Crate level, so that the
//! front and the Vfs can both use it.

/// A minimal JSON value: enough for POST policies.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        self.ws();
        if depth > 16 {
            return None;
        }
        match *self.s.get(self.i)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Json::Str),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Option<Json> {
        self.s[self.i..].starts_with(w.as_bytes()).then(|| {
            self.i += w.len();
            v
        })
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
            .map(Json::Num)
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
                        }
                        other => other as char,
                    });
                }
                _ => {
                    let start = self.i - 1;
                    let len = utf8_len(c);
                    out.push_str(std::str::from_utf8(self.s.get(start..start + len)?).ok()?);
                    self.i = start + len;
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                return Some(Json::Arr(items));
            }
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.s.get(self.i)? {
                b',' => self.i += 1,
                b']' => {}
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i)? {
                b'}' => {
                    self.i += 1;
                    return Some(Json::Obj(items));
                }
                b'"' => {}
                _ => return None,
            }
            let k = self.string()?;
            self.ws();
            (self.s.get(self.i)? == &b':').then_some(())?;
            self.i += 1;
            items.push((k, self.value(depth + 1)?));
            self.ws();
            match self.s.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

pub fn parse_json(text: &str) -> Option<Json> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policy_json() {
        let v =
            parse_json(r#"{"a": [1, "x\u0041\"", true, null, {"b": -2.5e1}], "é": "ü"}"#).unwrap();
        let Json::Obj(o) = v else { panic!() };
        assert_eq!(
            o[0].1,
            Json::Arr(vec![
                Json::Num(1.0),
                Json::Str("xA\"".into()),
                Json::Bool(true),
                Json::Null,
                Json::Obj(vec![("b".into(), Json::Num(-25.0))])
            ])
        );
        assert_eq!(o[1], ("é".into(), Json::Str("ü".into())));
        assert!(parse_json("{\"a\": }").is_none());
        assert!(parse_json("[1,2").is_none());
        assert!(parse_json(&"[".repeat(100)).is_none());
    }
}
