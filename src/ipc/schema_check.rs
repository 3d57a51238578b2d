//! Checks an IPC schema message's type tree before arrow converts it. Arrow's conversion
//! (`arrow_ipc::convert`) panics on a type it does not know, a parameter out of range (an
//! integer of 33 bits, a decimal of 100 bytes), a missing type table or a list without its
//! child; a panic must never be reachable from client bytes, so each field is checked here
//! the way that conversion reads it, and a schema it would panic on is refused.

use arrow::ipc::{
    DateUnit, Field, IntervalUnit, Message, MessageHeader, Precision, Schema, TimeUnit, Type,
    UnionMode,
};

/// Why a schema message is refused: what arrow's conversion would have panicked on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnfitSchema(String);

impl From<&str> for UnfitSchema {
    fn from(why: &str) -> Self {
        Self(why.to_string())
    }
}

impl From<String> for UnfitSchema {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// Deeper nesting than any table may have (the lake takes 16 levels): refused here, before
/// the recursion below or arrow's goes deeper.
const DEPTH_MAX: usize = 64;

/// Refuses a schema message whose schema arrow could not convert without panicking. Other
/// messages pass.
pub fn check_message_schema(message: &Message) -> Result<(), UnfitSchema> {
    if message.header_type() != MessageHeader::Schema {
        return Ok(());
    }
    let schema = message
        .header_as_schema()
        .ok_or("the IPC schema message holds no schema")?;
    check_schema(schema)
}

fn check_schema(schema: Schema) -> Result<(), UnfitSchema> {
    let fields = schema.fields().ok_or("the IPC schema has no field list")?;
    for field in fields {
        if field.type_type() == Type::Decimal && schema.endianness() == arrow::ipc::Endianness::Big
        {
            return Err("big-endian decimals are not supported".into());
        }
        check_field(field, 0)?;
    }
    Ok(())
}

fn check_field(field: Field, depth: usize) -> Result<(), UnfitSchema> {
    let name = field.name().unwrap_or_default();
    if depth > DEPTH_MAX {
        return Err(UnfitSchema::from(format!(
            "column {name:?} is nested over {DEPTH_MAX} levels deep"
        )));
    }
    if let Some(dictionary) = field.dictionary() {
        let index = dictionary.indexType().ok_or_else(|| {
            UnfitSchema::from(format!("dictionary column {name:?} has no index type"))
        })?;
        if !matches!(index.bitWidth(), 8 | 16 | 32 | 64) {
            return Err(UnfitSchema::from(format!(
                "dictionary column {name:?} has an index of {} bits",
                index.bitWidth()
            )));
        }
    }
    let children = field.children().map_or(0, |c| c.len());
    let bad = |why: &str| {
        Err(UnfitSchema::from(format!(
            "column {name:?} of IPC type {:?}: {why}",
            field.type_type()
        )))
    };
    let one_child = |n: usize| n == 1;
    match field.type_type() {
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::BinaryView
        | Type::LargeBinary
        | Type::Utf8
        | Type::Utf8View
        | Type::LargeUtf8
        | Type::Struct_ => {}
        Type::Int => match field.type_as_int() {
            Some(int) if matches!(int.bitWidth(), 8 | 16 | 32 | 64) => {}
            _ => return bad("integers have 8, 16, 32 or 64 bits"),
        },
        Type::FixedSizeBinary if field.type_as_fixed_size_binary().is_some() => {}
        Type::FloatingPoint => match field.type_as_floating_point().map(|f| f.precision()) {
            Some(Precision::HALF | Precision::SINGLE | Precision::DOUBLE) => {}
            _ => return bad("an unknown precision"),
        },
        Type::Date => match field.type_as_date().map(|d| d.unit()) {
            Some(DateUnit::DAY | DateUnit::MILLISECOND) => {}
            _ => return bad("an unknown unit"),
        },
        Type::Time => match field.type_as_time().map(|t| (t.bitWidth(), t.unit())) {
            Some((32, TimeUnit::SECOND | TimeUnit::MILLISECOND))
            | Some((64, TimeUnit::MICROSECOND | TimeUnit::NANOSECOND)) => {}
            _ => return bad("an unknown width or unit"),
        },
        Type::Timestamp | Type::Duration => {
            let unit = match field.type_type() {
                Type::Timestamp => field.type_as_timestamp().map(|t| t.unit()),
                _ => field.type_as_duration().map(|d| d.unit()),
            };
            if !matches!(
                unit,
                Some(
                    TimeUnit::SECOND
                        | TimeUnit::MILLISECOND
                        | TimeUnit::MICROSECOND
                        | TimeUnit::NANOSECOND
                )
            ) {
                return bad("an unknown unit");
            }
        }
        Type::Interval => match field.type_as_interval().map(|i| i.unit()) {
            Some(
                IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO,
            ) => {}
            _ => return bad("an unknown unit"),
        },
        Type::List | Type::LargeList | Type::ListView | Type::LargeListView
            if one_child(children) => {}
        Type::FixedSizeList if field.type_as_fixed_size_list().is_some() && one_child(children) => {
        }
        Type::Map if field.type_as_map().is_some() && one_child(children) => {}
        Type::RunEndEncoded if children == 2 => {}
        Type::Decimal => match field.type_as_decimal() {
            Some(d)
                if u8::try_from(d.precision()).is_ok()
                    && i8::try_from(d.scale()).is_ok()
                    && matches!(d.bitWidth(), 32 | 64 | 128 | 256) => {}
            _ => return bad("a precision, scale or width out of range"),
        },
        Type::Union => check_union(&field, children).or_else(|why| bad(&why.to_string()))?,
        _ => return bad("an unknown type, or one without its parameters or children"),
    }
    for child in field.children().into_iter().flatten() {
        check_field(child, depth + 1)?;
    }
    Ok(())
}

fn check_union(field: &Field, children: usize) -> Result<(), UnfitSchema> {
    let union = field.type_as_union().ok_or("no union parameters")?;
    if !matches!(union.mode(), UnionMode::Sparse | UnionMode::Dense) {
        return Err(UnfitSchema::from("an unknown union mode"));
    }
    let Some(ids) = union.typeIds() else {
        return Ok(());
    };
    // Arrow takes the ids as i8, one per child, each once.
    let mut seen = std::collections::HashSet::new();
    let valid = ids.len() == children
        && ids
            .iter()
            .all(|id| i8::try_from(id).is_ok_and(|id| id >= 0 && seen.insert(id)));
    if valid {
        Ok(())
    } else {
        Err(UnfitSchema::from(
            "union type ids that do not match its children",
        ))
    }
}
