//! Incremental splitting of a JSON array into its elements, chunk by chunk, so a content blob
//! of any size is read with memory bounded by its largest record, not by the blob.
//!
//! [`ArraySplitter`] takes the body as it arrives and hands out the bytes of each complete
//! top-level element; the caller parses each one (`serde_json::from_slice`). Only the
//! structure is checked here (brackets, strings, escapes, commas); a structurally broken blob is
//! refused with a reason, a blob cut short is [`SplitError::Truncated`].
//!
//! An element over the limit is [`SplitError::ElementTooLarge`] with [`ArraySplitter::push`];
//! [`ArraySplitter::push_items`] instead skips it (scanning to its end without buffering it)
//! and reports it as [`Item::Oversized`], so one huge record does not cost the rest of the blob.

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

/// What [`ArraySplitter::push_items`] hands out, in array order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// The bytes of a complete element of at most the limit.
    Element(&'a [u8]),
    /// An element larger than the limit, skipped without being buffered.
    Oversized {
        /// Zero-based position of the element in the array.
        index: usize,
        /// Its full length in bytes.
        bytes: u64,
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
    /// Length so far of the current element once it is known to be over the limit (it is being
    /// skipped, `buf` is empty); `None` while it is buffered.
    skipped: Option<u64>,
    /// The current element's bytes so far; never longer than `max_element`.
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
            skipped: None,
            buf: Vec::new(),
            max_element,
            elements: 0,
            offset: 0,
        }
    }

    /// Elements handed out so far (skipped oversized ones included).
    pub fn elements(&self) -> u64 {
        self.elements
    }

    /// Bytes of the current, unfinished element held in memory: at most the limit, and zero
    /// while an oversized element is being skipped.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
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
        self.split(chunk, false, |item| match item {
            Item::Element(e) => emit(e),
            // Not produced when oversized elements are refused.
            Item::Oversized { .. } => Ok(()),
        })
    }

    /// Feeds the next chunk; `on` receives each element completed by it, in order. An element
    /// over the limit is not an error: it is skipped, with memory bounded by the limit whatever
    /// its size, and reported as [`Item::Oversized`] when its end is reached; splitting goes on
    /// with the next element.
    ///
    /// # Errors
    /// [`SplitError`] for a body that is not a JSON array, as [`ArraySplitter::push`], except
    /// that [`SplitError::ElementTooLarge`] is never returned.
    pub fn push_items(
        &mut self,
        chunk: &[u8],
        mut on: impl FnMut(Item<'_>),
    ) -> Result<(), SplitError> {
        self.push_items_with(chunk, |item| {
            on(item);
            Ok::<(), SplitError>(())
        })
    }

    /// [`ArraySplitter::push_items`] with an `on` that may fail (its error ends the split).
    ///
    /// # Errors
    /// The first error of the structure or of `on`.
    pub fn push_items_with<E: From<SplitError>>(
        &mut self,
        chunk: &[u8],
        on: impl FnMut(Item<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.split(chunk, true, on)
    }

    /// The splitting itself: `skip_oversized` chooses between [`Item::Oversized`] and
    /// [`SplitError::ElementTooLarge`] for an element over the limit.
    fn split<E: From<SplitError>>(
        &mut self,
        chunk: &[u8],
        skip_oversized: bool,
        mut emit: impl FnMut(Item<'_>) -> Result<(), E>,
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
                        self.skipped = None;
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
                    let run = i - start;
                    if let Some(skipped) = self.skipped.as_mut() {
                        *skipped += run as u64;
                    } else if self.buf.len() + run > self.max_element {
                        if !skip_oversized {
                            return Err(SplitError::ElementTooLarge {
                                index: self.elements,
                                limit: self.max_element,
                            }
                            .into());
                        }
                        // Over the limit: from here on only its length is kept.
                        self.skipped = Some((self.buf.len() + run) as u64);
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(&chunk[start..i]);
                    }
                    debug_assert!(self.buf.len() <= self.max_element);
                    if end_of_element {
                        let index = self.elements;
                        self.elements += 1;
                        self.state = State::AfterElement;
                        match self.skipped.take() {
                            Some(bytes) => emit(Item::Oversized {
                                index: usize::try_from(index).unwrap_or(usize::MAX),
                                bytes,
                            })?,
                            None => emit(Item::Element(&self.buf))?,
                        }
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

    /// What `push_items` hands out, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Element(Vec<u8>),
        Oversized { index: usize, bytes: u64 },
    }

    /// Splits `body` with `push_items` in chunks of the given sizes (cycled), checking after
    /// every chunk that no more than `limit` bytes are buffered.
    fn items_in(body: &[u8], limit: usize, sizes: &[usize]) -> Result<Vec<Out>, SplitError> {
        let mut s = ArraySplitter::new(limit);
        let mut out = Vec::new();
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes
                .get(k % sizes.len().max(1))
                .copied()
                .unwrap_or(1)
                .clamp(1, rest.len());
            k += 1;
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            s.push_items(chunk, |item| {
                out.push(match item {
                    Item::Element(e) => Out::Element(e.to_vec()),
                    Item::Oversized { index, bytes } => Out::Oversized { index, bytes },
                });
            })?;
            assert!(
                s.buffered_len() <= limit,
                "{} bytes buffered",
                s.buffered_len()
            );
        }
        let total = s.finish()?;
        assert_eq!(total, out.len() as u64);
        Ok(out)
    }

    #[test]
    fn oversized_elements_are_skipped_and_reported() {
        let big = format!(r#"{{"Id":"big","P":"{}\"]}},[{{"}}"#, "x".repeat(200));
        let body = format!(r#"[{{"Id":"a"}}, {big} ,"s",{big},12345678901234567890,[1]]"#);
        let want = vec![
            Out::Element(br#"{"Id":"a"}"#.to_vec()),
            Out::Oversized {
                index: 1,
                bytes: big.len() as u64,
            },
            Out::Element(br#""s""#.to_vec()),
            Out::Oversized {
                index: 3,
                bytes: big.len() as u64,
            },
            Out::Oversized {
                index: 4,
                bytes: 20,
            },
            Out::Element(b"[1]".to_vec()),
        ];
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                items_in(body.as_bytes(), 16, &[chunk]).unwrap(),
                want,
                "chunk {chunk}"
            );
        }
        // Exactly the limit is not over it.
        assert_eq!(
            items_in(b"[\"1234\",\"12345\"]", 6, &[1]).unwrap(),
            vec![
                Out::Element(b"\"1234\"".to_vec()),
                Out::Oversized { index: 1, bytes: 7 }
            ]
        );
        // `push` still refuses the same body.
        let mut s = ArraySplitter::new(16);
        assert_eq!(
            s.push(body.as_bytes(), |_| {}),
            Err(SplitError::ElementTooLarge {
                index: 1,
                limit: 16
            })
        );
    }

    #[test]
    fn skipping_still_checks_the_structure() {
        let pad = "x".repeat(100);
        // A stray closing bracket after a skipped element.
        assert!(matches!(
            items_in(format!(r#"[{{"a":"{pad}"}}}}]"#).as_bytes(), 16, &[5]),
            Err(SplitError::Malformed { .. })
        ));
        // A bare value running into a quote.
        assert!(matches!(
            items_in(format!(r#"[1{pad}"x"]"#).as_bytes(), 16, &[5]),
            Err(SplitError::Malformed { .. })
        ));
        // Cut short inside a skipped element.
        assert_eq!(
            items_in(format!(r#"[{{"a":1}},{{"b":"{pad}"#).as_bytes(), 16, &[5]),
            Err(SplitError::Truncated { elements: 1 })
        );
        // Cut short inside a skipped string whose escapes hide its end.
        assert!(matches!(
            items_in(format!(r#"["{pad}\"]"#).as_bytes(), 16, &[3]),
            Err(SplitError::Truncated { elements: 0 })
        ));
        // Not an array, trailing data: as with `push`.
        assert!(matches!(
            items_in(b"{}", 16, &[1]),
            Err(SplitError::NotAnArray { .. })
        ));
        assert!(matches!(
            items_in(format!(r#"["{pad}"] x"#).as_bytes(), 16, &[4]),
            Err(SplitError::TrailingData { .. })
        ));
    }

    #[test]
    fn a_failing_consumer_stops_push_items_with() {
        #[derive(Debug, PartialEq)]
        enum E {
            Split,
            Stop(usize),
        }
        impl From<SplitError> for E {
            fn from(_: SplitError) -> E {
                E::Split
            }
        }
        let mut s = ArraySplitter::new(4);
        let r = s.push_items_with(b"[1,\"long string\",3]", |item| match item {
            Item::Oversized { index, .. } => Err(E::Stop(index)),
            Item::Element(_) => Ok(()),
        });
        assert_eq!(r, Err(E::Stop(1)));
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

        /// With elements over the limit mixed in, `push_items` in any chunking hands out the
        /// others byte for byte and one `Oversized` per big one, in order, never buffering
        /// more than the limit.
        #[test]
        fn push_items_skips_exactly_the_oversized(
            items in proptest::collection::vec(
                prop_oneof![
                    3 => json(),
                    1 => ("[a-z\"\\\\\\[\\]{},:]{0,300}", any::<bool>()).prop_map(|(pad, object)| {
                        if object {
                            serde_json::json!({"Id": "big", "Padding": pad, "Nested": [{"a": [pad.clone()]}]})
                        } else {
                            serde_json::Value::from(pad)
                        }
                    }),
                ],
                0..12,
            ),
            limit in 1usize..120,
            sizes in proptest::collection::vec(1usize..64, 1..8),
            pretty in any::<bool>(),
            spacing in proptest::collection::vec("[ \n\t\r]{0,3}", 3),
        ) {
            let mut body = format!("{}[", spacing[0]).into_bytes();
            let mut want = Vec::new();
            for (index, v) in items.iter().enumerate() {
                let bytes = if pretty { serde_json::to_vec_pretty(v) } else { serde_json::to_vec(v) }
                    .unwrap_or_default();
                if index > 0 {
                    body.extend_from_slice(spacing[1].as_bytes());
                    body.push(b',');
                }
                body.extend_from_slice(spacing[2].as_bytes());
                body.extend_from_slice(&bytes);
                want.push(if bytes.len() > limit {
                    Out::Oversized { index, bytes: bytes.len() as u64 }
                } else {
                    Out::Element(bytes)
                });
            }
            body.extend_from_slice(spacing[1].as_bytes());
            body.push(b']');
            body.extend_from_slice(spacing[0].as_bytes());
            prop_assert_eq!(items_in(&body, limit, &sizes).unwrap(), want);
        }

        /// On arbitrary bytes `push_items` never panics nor returns `ElementTooLarge`, and on
        /// a body `push` accepts it hands out the same elements.
        #[test]
        fn push_items_agrees_with_push(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            items in proptest::collection::vec(json(), 0..8),
            limit in 1usize..64,
        ) {
            let r = items_in(&bytes, limit, &[7]);
            let too_large = matches!(r, Err(SplitError::ElementTooLarge { .. }));
            prop_assert!(!too_large, "{:?}", r);
            let body = serde_json::to_vec(&serde_json::Value::Array(items)).unwrap_or_default();
            let mut s = ArraySplitter::new(usize::MAX);
            let mut whole = Vec::new();
            s.push(&body, |e| whole.push(Out::Element(e.to_vec()))).unwrap();
            prop_assert_eq!(items_in(&body, usize::MAX, &[5]).unwrap(), whole);
        }
    }
}
