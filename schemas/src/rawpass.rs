//! The second, light parse of accepted records: only for schemas with `json` fields or in
//! [`UnknownFields::Extra`](crate::UnknownFields::Extra) mode.
//!
//! arrow-json cannot put an arbitrary JSON value into a Utf8 column, so json fields are left
//! out of the schema it decodes and filled here instead. The parse walks each record with
//! serde_json without building a `Value`: keys that lead to no json field are skipped with
//! `IgnoredAny`, json fields are captured as borrowed raw text and appended to a string
//! builder per json field. Values come out in document order, so a json field under a list
//! of structs lines up with the struct array arrow-json built for the same records.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::StringBuilder;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::schema::{DatasetSchema, FieldDef, FieldType};

/// Where json fields sit in a record, as a tree of the keys leading to them.
#[derive(Debug)]
pub(crate) enum Node {
    /// A known key with no json field beneath it.
    Skip,
    /// A json field: its index among all json fields of the schema.
    Leaf(usize),
    Object(ObjectNode),
    List(Box<Node>),
}

#[derive(Debug, Default)]
pub(crate) struct ObjectNode {
    /// Key → (slot among the children that lead to json fields, node).
    children: HashMap<String, (Option<usize>, Node)>,
    /// The children with a slot, by slot.
    slotted: Vec<String>,
}

impl ObjectNode {
    fn from_fields(fields: &[FieldDef], next_leaf: &mut usize) -> ObjectNode {
        let mut node = ObjectNode::default();
        for field in fields {
            let child = Node::from_type(&field.field_type, next_leaf);
            let slot = if matches!(child, Node::Skip) {
                None
            } else {
                node.slotted.push(field.name.clone());
                Some(node.slotted.len() - 1)
            };
            node.children.insert(field.name.clone(), (slot, child));
        }
        node
    }
}

impl Node {
    fn from_type(field_type: &FieldType, next_leaf: &mut usize) -> Node {
        match field_type {
            FieldType::Json => {
                *next_leaf += 1;
                Node::Leaf(*next_leaf - 1)
            }
            FieldType::Struct(fields) if field_type.has_json() => {
                Node::Object(ObjectNode::from_fields(fields, next_leaf))
            }
            FieldType::List(inner) if inner.has_json() => {
                Node::List(Box::new(Node::from_type(inner, next_leaf)))
            }
            _ => Node::Skip,
        }
    }
}

/// Compiled second pass for one schema.
#[derive(Debug)]
pub(crate) struct RawPass {
    root: ObjectNode,
    leaves: usize,
    extra: bool,
}

/// Output of the second pass: one array per json field (in schema order) and the `_extra`
/// column when asked for.
pub(crate) struct RawColumns {
    pub leaves: Vec<ArrayRef>,
    pub extra: Option<ArrayRef>,
}

impl RawPass {
    pub fn new(schema: &DatasetSchema, extra: bool) -> Option<RawPass> {
        let mut leaves = 0;
        let root = ObjectNode::from_fields(&schema.fields, &mut leaves);
        (leaves > 0 || extra).then_some(RawPass {
            root,
            leaves,
            extra,
        })
    }

    /// Runs over `records` (each already accepted by arrow-json). On failure returns the
    /// positions (in `records`) that serde_json refused, with the reason.
    pub fn run<'a>(
        &self,
        records: impl Iterator<Item = &'a [u8]>,
        rows: usize,
    ) -> Result<RawColumns, Vec<(usize, String)>> {
        let mut state = State {
            leaves: (0..self.leaves).map(|_| StringBuilder::new()).collect(),
            extra: self
                .extra
                .then(|| StringBuilder::with_capacity(rows, rows * 16)),
            extra_text: Vec::new(),
        };
        let mut failures = Vec::new();
        for (position, record) in records.enumerate() {
            let mut deserializer = serde_json::Deserializer::from_slice(record);
            let seed = RootSeed {
                node: &self.root,
                state: &mut state,
            };
            if let Err(e) = seed
                .deserialize(&mut deserializer)
                .and_then(|()| deserializer.end())
            {
                failures.push((position, e.to_string()));
            }
        }
        if !failures.is_empty() {
            return Err(failures);
        }
        Ok(RawColumns {
            leaves: state
                .leaves
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect(),
            extra: state
                .extra
                .as_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        })
    }
}

struct State {
    leaves: Vec<StringBuilder>,
    extra: Option<StringBuilder>,
    extra_text: Vec<u8>,
}

impl State {
    /// A struct occurrence that is null or absent: one null per json field reachable through
    /// structs only (lists beneath it are null, so they hold no elements).
    fn fill_null(&mut self, node: &Node) {
        match node {
            Node::Leaf(index) => self.leaves[*index].append_null(),
            Node::Object(object) => {
                for name in &object.slotted {
                    self.fill_null(&object.children[name].1);
                }
            }
            Node::List(_) | Node::Skip => {}
        }
    }

    fn value<'de, A: MapAccess<'de>>(&mut self, node: &Node, map: &mut A) -> Result<(), A::Error> {
        match node {
            Node::Skip => map.next_value::<IgnoredAny>().map(drop),
            Node::Leaf(index) => {
                let raw = map.next_value::<&RawValue>()?;
                let text = raw.get();
                if text == "null" {
                    self.leaves[*index].append_null();
                } else {
                    self.leaves[*index].append_value(text);
                }
                Ok(())
            }
            Node::Object(_) | Node::List(_) => map.next_value_seed(NodeSeed { node, state: self }),
        }
    }
}

/// Reads an object's keys, borrowing them when they hold no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Receives each unknown key of the top-level object with its raw value.
type UnknownSink<'a> = &'a mut dyn FnMut(&str, &RawValue);

/// Walks one object, tracking which json-bearing children it saw so that absent ones get a
/// null and repeated ones are refused (they would break the alignment with arrow-json).
fn walk_object<'de, A: MapAccess<'de>>(
    object: &ObjectNode,
    state: &mut State,
    map: &mut A,
    mut unknown: Option<UnknownSink<'_>>,
) -> Result<(), A::Error> {
    let mut seen = vec![false; object.slotted.len()];
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        match object.children.get(key.as_ref()) {
            Some((Some(slot), node)) => {
                if std::mem::replace(&mut seen[*slot], true) {
                    return Err(de::Error::custom(format!("duplicate key {key}")));
                }
                state.value(node, map)?;
            }
            Some((None, _)) => {
                map.next_value::<IgnoredAny>()?;
            }
            None => match unknown.as_mut() {
                Some(collect) => {
                    let raw = map.next_value::<&RawValue>()?;
                    collect(&key, raw);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            },
        }
    }
    for (slot, name) in object.slotted.iter().enumerate() {
        if !seen[slot] {
            state.fill_null(&object.children[name].1);
        }
    }
    Ok(())
}

struct RootSeed<'s> {
    node: &'s ObjectNode,
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a json object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.state.extra.is_none() {
            return walk_object(self.node, self.state, &mut map, None);
        }
        let mut text = std::mem::take(&mut self.state.extra_text);
        text.clear();
        let mut collect = |key: &str, raw: &RawValue| {
            text.push(if text.is_empty() { b'{' } else { b',' });
            // Writing a &str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut text, key);
            text.push(b':');
            text.extend_from_slice(raw.get().as_bytes());
        };
        let result = walk_object(self.node, self.state, &mut map, Some(&mut collect));
        let builder = self.state.extra.as_mut().expect("extra mode");
        if text.is_empty() {
            builder.append_null();
        } else {
            text.push(b'}');
            builder.append_value(std::str::from_utf8(&text).map_err(de::Error::custom)?);
        }
        self.state.extra_text = text;
        result
    }
}

struct NodeSeed<'s> {
    node: &'s Node,
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object, a list or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.state.fill_null(self.node);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.node {
            Node::Object(object) => walk_object(object, self.state, &mut map, None),
            _ => Err(de::Error::custom("unexpected object")),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.node {
            Node::List(element) => {
                while seq
                    .next_element_seed(NodeSeed {
                        node: element,
                        state: self.state,
                    })?
                    .is_some()
                {}
                Ok(())
            }
            _ => Err(de::Error::custom("unexpected list")),
        }
    }
}
