//! The building blocks of the project's canonical byte formats: the record body
//! (`store::record`) and the view record (`projection::codec`). Deterministic by construction:
//! integers big-endian and fixed-width, texts and lists length-prefixed, one tag per enum value.
//! Readers accept exactly what writers produce. Pure: imports nothing but `domain`.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::{FieldError, MemberKind, MemberRole, Pillar, ProjectStatus, Treatment};

/// Why bytes are not a value of a canonical format this build can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} format {found} is not the one this build reads ({supported}); use a matching pax-ledger")]
    UnsupportedFormat { what: &'static str, found: u8, supported: u8 },
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated { what: &'static str, offset: usize, needed: usize, available: usize },
    #[error("{count} bytes after the end")]
    TrailingBytes { count: usize },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{what} is not valid UTF-8: {source}")]
    BadText { what: &'static str, source: std::str::Utf8Error },
    #[error("{what} is not a valid time ({seconds} s, {nanos} ns)")]
    BadTime { what: &'static str, seconds: i64, nanos: u32 },
    #[error("{what} is not a valid date ({days} days from the common era)")]
    BadDate { what: &'static str, days: i32 },
    #[error("invalid value: {0}")]
    Invalid(FieldError),
    #[error("labels are not in strictly increasing key order at {key:?}")]
    LabelsOutOfOrder { key: String },
    #[error("filed under stream {stored} but its event belongs to {derived}")]
    StreamMismatch { stored: String, derived: String },
}

#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }
    pub fn count(&mut self, count: usize) {
        self.u32(u32::try_from(count).expect("a text or list longer than u32::MAX"));
    }
    pub fn str(&mut self, text: &str) {
        self.count(text.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }
    pub fn uuid(&mut self, id: &Uuid) {
        self.bytes.extend_from_slice(id.as_bytes());
    }
    pub fn time(&mut self, time: &DateTime<Utc>) {
        self.i64(time.timestamp());
        self.u32(time.timestamp_subsec_nanos());
    }
    pub fn date(&mut self, date: &NaiveDate) {
        self.i32(date.num_days_from_ce());
    }
    pub fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
        }
    }
    pub fn list<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.count(items.len());
        for item in items {
            write(self, item);
        }
    }
}

pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, needed: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.bytes.len() - self.offset;
        if needed > available {
            return Err(DecodeError::Truncated { what, offset: self.offset, needed, available });
        }
        let taken = &self.bytes[self.offset..self.offset + needed];
        self.offset += needed;
        Ok(taken)
    }
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N, what)?.try_into().expect("take returns exactly N bytes"))
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    pub fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        Ok(usize::try_from(self.u32(what)?).expect("usize holds a u32"))
    }
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        Ok(self.str(what)?.to_owned())
    }
    /// A text, checked as UTF-8 in place.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.count(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|source| DecodeError::BadText { what, source })
    }
    /// A `list<str>` read in place, each text checked by `check` as well.
    pub fn texts(
        &mut self,
        what: &'static str,
        mut check: impl FnMut(&'a str) -> Result<(), DecodeError>,
    ) -> Result<Texts<'a>, DecodeError> {
        let count = self.count(what)?;
        let start = self.offset();
        for _ in 0..count {
            check(self.str(what)?)?;
        }
        Ok(Texts::new(what, count, self.read_since(start)))
    }
    /// How many bytes were read so far.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// The bytes read since `offset`.
    pub fn read_since(&self, offset: usize) -> &'a [u8] {
        &self.bytes[offset..self.offset]
    }
    pub fn uuid(&mut self, what: &'static str) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }
    pub fn time(&mut self, what: &'static str) -> Result<DateTime<Utc>, DecodeError> {
        let seconds = self.i64(what)?;
        let nanos = self.u32(what)?;
        DateTime::from_timestamp(seconds, nanos).ok_or(DecodeError::BadTime { what, seconds, nanos })
    }
    pub fn date(&mut self, what: &'static str) -> Result<NaiveDate, DecodeError> {
        let days = self.i32(what)?;
        NaiveDate::from_num_days_from_ce_opt(days).ok_or(DecodeError::BadDate { what, days })
    }
    pub fn option<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(DecodeError::UnknownTag { what, tag }),
        }
    }
    pub fn list<T>(
        &mut self,
        what: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.count(what)?;
        // Every item takes at least one byte: a corrupt count cannot make us allocate more than
        // the record's size.
        let mut items = Vec::with_capacity(count.min(self.bytes.len() - self.offset));
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.offset {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// A `list<str>` checked in place by [`Reader::texts`]: its texts, borrowed from the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Texts<'a> {
    what: &'static str,
    count: usize,
    /// The items' bytes, exactly.
    items: &'a [u8],
}

impl<'a> Texts<'a> {
    /// `count` texts, read and checked from exactly `items` (`what` names them in errors).
    pub fn new(what: &'static str, count: usize, items: &'a [u8]) -> Self {
        Self { what, count, items }
    }
    /// The texts, in order. They were checked when read; each is read again here (with the
    /// same reader, so a mismatch would be an error, never a panic).
    pub fn iter(&self) -> impl Iterator<Item = Result<&'a str, DecodeError>> + use<'a> {
        let (what, mut items) = (self.what, Reader::new(self.items));
        (0..self.count).map(move |_| items.str(what))
    }
}

/// Defines the writer and the reader of an enum's one-byte tag, side by side so that they
/// cannot drift apart.
macro_rules! enum_tags {
    ($write:ident, $read:ident, $ty:ident, $what:literal, [$($variant:ident = $tag:literal),+ $(,)?]) => {
        pub fn $write(w: &mut Writer, value: $ty) {
            w.u8(match value {
                $($ty::$variant => $tag,)+
            });
        }

        pub fn $read(r: &mut Reader<'_>) -> Result<$ty, DecodeError> {
            match r.u8($what)? {
                $($tag => Ok($ty::$variant),)+
                tag => Err(DecodeError::UnknownTag { what: $what, tag }),
            }
        }
    };
}

enum_tags!(write_member_kind, read_member_kind, MemberKind, "member kind", [State = 0, Organization = 1]);
enum_tags!(write_member_role, read_member_role, MemberRole, "member role", [Member = 0, Guest = 1]);
enum_tags!(
    write_pillar,
    read_pillar,
    Pillar,
    "pillar",
    [Semiconductors = 0, CriticalMinerals = 1, Energy = 2, AiCompute = 3, Networks = 4,]
);
enum_tags!(
    write_project_status,
    read_project_status,
    ProjectStatus,
    "project status",
    [Identified = 0, Approved = 1, UnderWay = 2, Completed = 3, Cancelled = 4,]
);
enum_tags!(
    write_treatment,
    read_treatment,
    Treatment,
    "treatment",
    [Allowed = 0, AllowedWithLevy = 1, LicenseRequired = 2, Prohibited = 3,]
);
