//! Reading small XML documents (S3 request bodies, and answers from an S3 upstream) as a
//! flat list of text leaves: enough for S3's shallow documents, with no schema to keep.

use quick_xml::events::Event;

/// One element with text content, with the path of element names leading to it.
#[derive(Debug, PartialEq)]
pub struct Leaf {
    pub path: Vec<String>,
    pub text: String,
}

/// Flattens a document into its text leaves, in order. Namespaces prefixes are dropped.
/// Entity and character references (`&#13;`) are unescaped.
pub fn leaves(xml: &[u8]) -> Result<Vec<Leaf>, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut leaves = Vec::new();
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                path.push(local_name(e.name().as_ref()));
                text.clear();
            }
            Ok(Event::Text(t)) => {
                let s = t.unescape().map_err(|e| e.to_string())?;
                text.push_str(&s);
            }
            Ok(Event::CData(t)) => text.push_str(&String::from_utf8_lossy(&t)),
            Ok(Event::End(_)) => {
                if path.is_empty() {
                    return Err("unbalanced end tag".into());
                }
                leaves.push(Leaf {
                    path: path.clone(),
                    text: std::mem::take(&mut text),
                });
                path.pop();
            }
            Ok(Event::Empty(e)) => {
                let mut p = path.clone();
                p.push(local_name(e.name().as_ref()));
                leaves.push(Leaf {
                    path: p,
                    text: String::new(),
                });
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        buf.clear();
    }
    if !path.is_empty() || leaves.is_empty() {
        return Err("incomplete document".into());
    }
    Ok(leaves)
}

fn local_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match s.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => s.into_owned(),
    }
}
