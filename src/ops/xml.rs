//! XML in and out. Responses are written with [`XmlWriter`], which appends straight to one
//! buffer, escapes text and always starts with the XML declaration. Request bodies are read with
//! quick-xml events by [`parse_elements`], which rejects oversized bodies before parsing and
//! ignores elements it does not know (newer SDKs add fields).

use std::io::Read;

use crate::ops::error::{Code, S3Error};

/// The S3 namespace every result document carries.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Largest request XML we parse: DeleteObjects with 1000 keys of 1024 bytes fits easily.
pub const MAX_XML_BODY: u64 = 2 * 1024 * 1024;

/// The declaration every document starts with.
pub const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

pub struct XmlWriter {
    buf: Vec<u8>,
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlWriter {
    pub fn new() -> XmlWriter {
        XmlWriter::with_capacity(512)
    }

    /// A writer with room for a document of about `bytes`.
    pub fn with_capacity(bytes: usize) -> XmlWriter {
        let mut buf = Vec::with_capacity(bytes.max(XML_DECL.len()));
        buf.extend_from_slice(XML_DECL.as_bytes());
        XmlWriter { buf }
    }

    /// Opens the document's root element with the S3 namespace.
    pub fn root(&mut self, name: &str) {
        self.tag(b"<", name, b" xmlns=\"");
        self.buf.extend_from_slice(S3_NS.as_bytes());
        self.buf.extend_from_slice(b"\">");
    }

    pub fn open(&mut self, name: &str) {
        self.tag(b"<", name, b">");
    }

    pub fn close(&mut self, name: &str) {
        self.tag(b"</", name, b">");
    }

    /// Writes markup that needs no escaping, such as several tags at once.
    pub fn markup(&mut self, markup: &'static str) {
        self.buf.extend_from_slice(markup.as_bytes());
    }

    /// Writes `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: &str) {
        self.open(name);
        self.text(text);
        self.close(name);
    }

    /// Writes `<name>value</name>` for a value whose text needs no escaping (numbers, dates).
    pub fn elem_display(&mut self, name: &str, value: impl std::fmt::Display) {
        use std::io::Write;
        self.open(name);
        let _ = write!(self.buf, "{value}"); // writing into a Vec cannot fail
        self.close(name);
    }

    fn tag(&mut self, before: &[u8], name: &str, after: &[u8]) {
        self.buf.extend_from_slice(before);
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(after);
    }

    /// Escapes the five XML specials. Characters XML 1.0 cannot carry at all (NUL and other C0
    /// controls but tab, CR and LF) are percent-encoded, so a hostile key never makes a body
    /// unparsable. Runs without specials are copied whole.
    pub fn text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut done = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let code: &[u8] = match b {
                b'<' => b"&lt;",
                b'>' => b"&gt;",
                b'&' => b"&amp;",
                b'\'' => b"&apos;",
                b'"' => b"&quot;",
                b'\t' | b'\n' | b'\r' => continue,
                0..=0x1f => &[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]],
                _ => continue,
            };
            self.buf.extend_from_slice(&bytes[done..i]);
            self.buf.extend_from_slice(code);
            done = i + 1;
        }
        self.buf.extend_from_slice(&bytes[done..]);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// The document without its XML declaration, to follow one already sent.
    pub fn finish_body(self) -> Vec<u8> {
        self.buf[XML_DECL.len()..].to_vec()
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Reads at most [`MAX_XML_BODY`] bytes of a request body; larger bodies are MalformedXML.
pub fn read_xml_body(body: &mut dyn Read) -> Result<Vec<u8>, S3Error> {
    let mut buf = Vec::new();
    let n = body
        .take(MAX_XML_BODY + 1)
        .read_to_end(&mut buf)
        .map_err(|e| S3Error::new(Code::IncompleteBody, format!("reading body: {e}")))?;
    if n as u64 > MAX_XML_BODY {
        return Err(malformed("The XML body is too large."));
    }
    Ok(buf)
}

pub fn malformed(msg: &str) -> S3Error {
    S3Error::new(
        Code::MalformedXML,
        format!("The XML you provided was not well-formed or did not validate against our published schema. {msg}"),
    )
}

pub use crate::xml::Leaf;

/// Flattens a document into its text leaves (see [`crate::xml::leaves`]); a document that
/// cannot be read is MalformedXML.
pub fn parse_elements(xml: &[u8]) -> Result<Vec<Leaf>, S3Error> {
    crate::xml::leaves(xml).map_err(|e| malformed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_document() {
        let mut w = XmlWriter::new();
        w.root("R");
        w.elem("Key", "a<b>&\"c\"");
        w.close("R");
        let s = String::from_utf8(w.finish()).unwrap();
        assert_eq!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><R xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Key>a&lt;b&gt;&amp;&quot;c&quot;</Key></R>"
        );
    }

    #[test]
    fn text_is_escaped_as_quick_xml_escapes_it() {
        for text in [
            "plain",
            "a<b>&'\"c'",
            "<<>>",
            "é&ü 日本",
            "",
            "&amp;",
            "x\ty\nz\r",
        ] {
            let mut w = XmlWriter::new();
            w.elem("K", text);
            let want = format!("{XML_DECL}<K>{}</K>", quick_xml::escape::escape(text));
            assert_eq!(String::from_utf8(w.finish()).unwrap(), want);
        }
    }

    #[test]
    fn control_characters_never_reach_the_document() {
        let mut w = XmlWriter::new();
        w.elem("R", "a\0b\x01c\td");
        assert!(String::from_utf8(w.finish())
            .unwrap()
            .ends_with("<R>a%00b%01c\td</R>"));
    }

    #[test]
    fn parses_leaves_with_char_refs() {
        let doc = b"<?xml version=\"1.0\"?><Delete xmlns=\"x\"><Object><Key>a&#13;&#10;b</Key></Object><Quiet>true</Quiet><Unknown/></Delete>";
        let leaves = parse_elements(doc).unwrap();
        assert_eq!(leaves[0].path, ["Delete", "Object", "Key"]);
        assert_eq!(leaves[0].text, "a\r\nb");
        assert_eq!(leaves[2].path, ["Delete", "Quiet"]);
        assert!(parse_elements(b"<a><b></a>").is_err());
        assert!(parse_elements(b"").is_err());
    }
}
