//! Incremental splitting of a JSON array into its elements, chunk by chunk, so a content blob
//! of any size is read with memory bounded by its largest record, not by the blob.
//!
//! [`ArraySplitter`] takes the body as it arrives and hands out the bytes of each complete
//! top-level element; the caller parses each one (`serde_json::from_slice`). Only the
//! structure is checked here (brackets, strings, escapes, commas); a structurally broken blob is
//! refused with a reason, a blob cut short is [`SplitError::Truncated`].

/// Why a body is not a JSON array of elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The body does not start with `[`.
    #[error("the body is not a JSON array (it starts with {found:?})")]
    NotAnArray {
        /// The first non-blank character, as text.
        found: String,
    },
    /// Something other than white space after the closing `]`.
    #[error("unexpected data after the end of the JSON array (at byte {offset})")]
    TrailingData {
        /// Byte offset in the body.
        offset: u64,
    },
    /// The array ended before it was closed.
    #[error(
        "the JSON array ends without its closing `]` after {elements} element(s): the body was cut short"
    )]
    Truncated {
        /// Elements seen before the end.
        elements: u64,
    },
    /// One element is larger than the limit.
    #[error("element {index} is larger than {limit} bytes")]
    ElementTooLarge {
        /// Zero-based index of the element.
        index: u64,
        /// The limit.
        limit: usize,
    },
    /// The structure is broken (a stray `]`, `}`, or `,`).
    #[error("the JSON array is malformed at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset in the body.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// After `[` or `,`: white space, then an element (or `]` right after `[`).
    BeforeElement { after_comma: bool },
    /// Inside an element.
    InElement,
    /// After an element: white space, then `,` or `]`.
    AfterElement,
    /// After the closing `]`.
    Done,
}

/// Splits a JSON array into its elements as bytes arrive. See the module docs.
#[derive(Debug)]
pub struct ArraySplitter {
    state: State,
    /// Nesting depth inside the current element (`{`/`[` open, `}`/`]` close).
    depth: u32,
    in_string: bool,
    escape: bool,
    /// The current element is a bare scalar (number, `true`, `null`…).
    scalar: bool,
    buf: Vec<u8>,
    max_element: usize,
    elements: u64,
    offset: u64,
}

fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl ArraySplitter {
    /// A splitter refusing elements over `max_element` bytes.
    pub fn new(max_element: usize) -> ArraySplitter {
        ArraySplitter {
            state: State::Start,
            depth: 0,
            in_string: false,
            escape: false,
            scalar: false,
            buf: Vec::new(),
            max_element,
            elements: 0,
            offset: 0,
        }
    }

    /// Elements handed out so far.
    pub fn elements(&self) -> u64 {
        self.elements
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Feeds the next chunk; `emit` receives each element completed by it, in order.
    ///
    /// # Errors
    /// [`SplitError`] for a body that is not a JSON array ([`ArraySplitter::push_with`] takes
    /// an `emit` that may fail).
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8])) -> Result<(), SplitError> {
        self.push_with(chunk, |e| {
            emit(e);
            Ok::<(), SplitError>(())
        })
    }

    /// [`ArraySplitter::push`] with an `emit` that may fail (its error ends the split).
    ///
    /// # Errors
    /// The first error of the structure or of `emit`.
    pub fn push_with<E: From<SplitError>>(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            let at = self.offset + i as u64;
            match self.state {
                State::Start => {
                    // A UTF-8 byte-order mark at the very start is skipped.
                    let bom = usize::try_from(at)
                        .ok()
                        .and_then(|k| BOM.get(k))
                        .is_some_and(|m| *m == b);
                    if bom || blank(b) {
                        // Skipped.
                    } else if b == b'[' {
                        self.state = State::BeforeElement { after_comma: false };
                    } else {
                        let found = String::from_utf8_lossy(&chunk[i..chunk.len().min(i + 16)])
                            .into_owned();
                        return Err(SplitError::NotAnArray { found }.into());
                    }
                    i += 1;
                }
                State::BeforeElement { after_comma } => {
                    if blank(b) {
                        i += 1;
                    } else if b == b']' {
                        if after_comma {
                            return Err(SplitError::Malformed {
                                offset: at,
                                reason: "a `,` before the closing `]`",
                            }
                            .into());
                        }
                        self.state = State::Done;
                        i += 1;
                    } else if matches!(b, b',' | b'}') {
                        return Err(SplitError::Malformed {
                            offset: at,
                            reason: "an element was expected",
                        }
                        .into());
                    } else {
                        self.state = State::InElement;
                        self.depth = 0;
                        self.in_string = false;
                        self.escape = false;
                        self.scalar = !matches!(b, b'{' | b'[' | b'"');
                        self.buf.clear();
                        // Not consumed: InElement reads it.
                    }
                }
                State::InElement => {
                    // Copy the longest run that cannot end the element, then look at one byte.
                    let start = i;
                    let mut end_of_element = false;
                    while i < chunk.len() {
                        let c = chunk[i];
                        if self.in_string {
                            if self.escape {
                                self.escape = false;
                            } else if c == b'\\' {
                                self.escape = true;
                            } else if c == b'"' {
                                self.in_string = false;
                                if self.depth == 0 {
                                    // A top-level string ends here.
                                    i += 1;
                                    end_of_element = true;
                                    break;
                                }
                            }
                            i += 1;
                            continue;
                        }
                        if self.scalar {
                            if blank(c) || c == b',' || c == b']' {
                                end_of_element = true;
                                break;
                            }
                            if matches!(c, b'{' | b'[' | b'}' | b'"') {
                                return Err(SplitError::Malformed {
                                    offset: self.offset + i as u64,
                                    reason: "a bare value runs into a bracket or quote",
                                }
                                .into());
                            }
                            i += 1;
                            continue;
                        }
                        match c {
                            b'"' => self.in_string = true,
                            b'{' | b'[' => self.depth += 1,
                            b'}' | b']' => {
                                if self.depth == 0 {
                                    return Err(SplitError::Malformed {
                                        offset: self.offset + i as u64,
                                        reason: "a closing bracket without its opening one",
                                    }
                                    .into());
                                }
                                self.depth -= 1;
                                if self.depth == 0 {
                                    i += 1;
                                    end_of_element = true;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    if self.buf.len() + (i - start) > self.max_element {
                        return Err(SplitError::ElementTooLarge {
                            index: self.elements,
                            limit: self.max_element,
                        }
                        .into());
                    }
                    self.buf.extend_from_slice(&chunk[start..i]);
                    if end_of_element {
                        self.elements += 1;
                        self.state = State::AfterElement;
                        emit(&self.buf)?;
                        self.buf.clear();
                    }
                }
                State::AfterElement => {
                    if blank(b) {
                    } else if b == b',' {
                        self.state = State::BeforeElement { after_comma: true };
                    } else if b == b']' {
                        self.state = State::Done;
                    } else {
                        return Err(SplitError::Malformed {
                            offset: at,
                            reason: "`,` or `]` was expected after an element",
                        }
                        .into());
                    }
                    i += 1;
                }
                State::Done => {
                    if !blank(b) {
                        return Err(SplitError::TrailingData { offset: at }.into());
                    }
                    i += 1;
                }
            }
        }
        self.offset += chunk.len() as u64;
        // Keep the buffer from holding on to the capacity of one huge element.
        if self.buf.is_empty() && self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// The body has ended.
    ///
    /// # Errors
    /// [`SplitError::Truncated`] when the array was not closed (an empty body included).
    pub fn finish(self) -> Result<u64, SplitError> {
        match self.state {
            State::Done => Ok(self.elements),
            _ => Err(SplitError::Truncated {
                elements: self.elements,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split_in(body: &[u8], chunk: usize) -> Result<Vec<serde_json::Value>, SplitError> {
        let mut s = ArraySplitter::new(1 << 20);
        let mut out = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            s.push(c, |e| {
                out.push(serde_json::from_slice(e).unwrap_or(serde_json::Value::Null));
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn elements_come_out_whole_whatever_the_chunking() {
        let body = br#" [ {"Id":"a","x":[1,{"y":"]}\"["}]}, "s\"tr", 12.5e3 ,true,null,[],{} ] "#;
        let want: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(split_in(body, chunk).unwrap(), want, "chunk {chunk}");
        }
        assert_eq!(split_in(b"[]", 1).unwrap(), Vec::<serde_json::Value>::new());
        assert_eq!(
            split_in(b"\xEF\xBB\xBF[1]", 1).unwrap(),
            vec![serde_json::json!(1)]
        );
    }

    #[test]
    fn broken_bodies_are_refused_with_a_reason() {
        assert!(matches!(
            split_in(b"{\"a\":1}", 4),
            Err(SplitError::NotAnArray { .. })
        ));
        assert!(matches!(
            split_in(b"[{\"a\":1},{\"b\"", 4),
            Err(SplitError::Truncated { elements: 1 })
        ));
        assert!(matches!(
            split_in(b"", 4),
            Err(SplitError::Truncated { .. })
        ));
        assert!(matches!(
            split_in(b"[1,]", 4),
            Err(SplitError::Malformed { .. })
        ));
        assert!(matches!(
            split_in(b"[1] x", 4),
            Err(SplitError::TrailingData { offset: 4 })
        ));
        assert!(matches!(
            split_in(b"[1 2]", 4),
            Err(SplitError::Malformed { .. })
        ));
        assert!(matches!(
            split_in(b"[}]", 4),
            Err(SplitError::Malformed { .. })
        ));
        let big = format!("[\"{}\"]", "x".repeat(100));
        let mut s = ArraySplitter::new(50);
        assert!(matches!(
            s.push(big.as_bytes(), |_| {}),
            Err(SplitError::ElementTooLarge {
                index: 0,
                limit: 50
            })
        ));
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ -~\\PC]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-zA-Z\"\\\\\\],{}]{0,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any array serde_json writes splits back into the same elements, in any chunking.
        #[test]
        fn splits_what_serde_writes(
            items in proptest::collection::vec(json(), 0..12),
            chunk in 1usize..50,
            pretty in any::<bool>(),
        ) {
            let v = serde_json::Value::Array(items.clone());
            let body = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }
                .unwrap_or_default();
            prop_assert_eq!(split_in(&body, chunk).unwrap(), items);
        }

        /// Arbitrary bytes never panic, and a body cut anywhere is never accepted as complete
        /// unless the cut falls after the closing bracket.
        #[test]
        fn arbitrary_bytes_and_cuts(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..200) {
            let _ = split_in(&bytes, 7);
            let body = br#"[{"Id":"1","a":"x,]}"},{"Id":"2"}]"#;
            let cut = cut % body.len();
            prop_assert!(split_in(&body[..cut], 3).is_err());
        }
    }
}
