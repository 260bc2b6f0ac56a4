//! The keys of a retrieval command.

/// Space-separated keys of a retrieval command, borrowed from the request line.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a>(pub &'a [u8]);

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.0;
        let start = s.iter().position(|&b| b != b' ')?;
        let s = &s[start..];
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        self.0 = &s[end..];
        Some(&s[..end])
    }
}
