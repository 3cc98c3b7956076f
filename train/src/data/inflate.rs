//! A gzip (RFC 1952) and DEFLATE (RFC 1951) decoder, to read the `.gz` datasets as they are
//! distributed, with no dependency: canonical Huffman codes decoded length by length (as
//! zlib's puff does), checked against the gzip trailer's CRC-32 and size.

const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
    24577,
];
const DIST_EXTRA: [u8; 30] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    fn need(&mut self, n: u32) -> Result<(), String> {
        while self.count < n {
            let byte = *self.data.get(self.pos).ok_or("the compressed data ends early")?;
            self.pos += 1;
            self.buf |= (byte as u64) << self.count;
            self.count += 8;
        }
        Ok(())
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        self.need(n)?;
        let v = (self.buf & ((1u64 << n) - 1)) as u32;
        self.buf >>= n;
        self.count -= n;
        Ok(v)
    }

    /// Drops the bits left of the current byte.
    fn align(&mut self) {
        let drop = self.count % 8;
        self.buf >>= drop;
        self.count -= drop;
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    /// From code lengths per symbol (0: unused). Over-subscribed codes are errors; incomplete
    /// ones are allowed (a distance code of one symbol is).
    fn new(lengths: &[u8]) -> Result<Huffman, String> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = left * 2 - c as i32;
            if left < 0 {
                return Err("an over-subscribed Huffman code".into());
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        Ok(Huffman { count, symbol })
    }

    fn decode(&self, bits: &mut Bits) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.bits(1)? as i32;
            let count = self.count[len] as i32;
            if code - count < first {
                return Ok(self.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("an invalid Huffman code".into())
    }
}

fn fixed_codes() -> (Huffman, Huffman) {
    let mut lengths = [0u8; 288];
    lengths[..144].fill(8);
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    lengths[280..].fill(8);
    (Huffman::new(&lengths).expect("the fixed code is valid"), Huffman::new(&[5u8; 30]).expect("the fixed code is valid"))
}

fn dynamic_codes(bits: &mut Bits) -> Result<(Huffman, Huffman), String> {
    let nlen = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err("bad counts in a dynamic block header".into());
    }
    let mut lengths = [0u8; 19];
    for &i in &CODE_LENGTH_ORDER[..ncode] {
        lengths[i] = bits.bits(3)? as u8;
    }
    let lencode = Huffman::new(&lengths)?;
    let mut lens = vec![0u8; nlen + ndist];
    let mut i = 0;
    while i < nlen + ndist {
        let sym = lencode.decode(bits)?;
        if sym < 16 {
            lens[i] = sym as u8;
            i += 1;
            continue;
        }
        let (value, repeat) = match sym {
            16 => {
                let prev = *lens[..i].last().ok_or("a repeat with no previous length")?;
                (prev, 3 + bits.bits(2)? as usize)
            }
            17 => (0, 3 + bits.bits(3)? as usize),
            _ => (0, 11 + bits.bits(7)? as usize),
        };
        if i + repeat > nlen + ndist {
            return Err("code lengths overrun the header".into());
        }
        lens[i..i + repeat].fill(value);
        i += repeat;
    }
    if lens[256] == 0 {
        return Err("no end-of-block code".into());
    }
    Ok((Huffman::new(&lens[..nlen])?, Huffman::new(&lens[nlen..])?))
}

fn inflate_codes(bits: &mut Bits, out: &mut Vec<u8>, lencode: &Huffman, distcode: &Huffman) -> Result<(), String> {
    loop {
        let sym = lencode.decode(bits)? as usize;
        match sym {
            0..=255 => out.push(sym as u8),
            256 => return Ok(()),
            _ => {
                let k = sym - 257;
                if k >= 29 {
                    return Err("a bad length symbol".into());
                }
                let len = LEN_BASE[k] as usize + bits.bits(LEN_EXTRA[k] as u32)? as usize;
                let d = distcode.decode(bits)? as usize;
                if d >= 30 {
                    return Err("a bad distance symbol".into());
                }
                let dist = DIST_BASE[d] as usize + bits.bits(DIST_EXTRA[d] as u32)? as usize;
                if dist > out.len() {
                    return Err("a distance before the start of the data".into());
                }
                let start = out.len() - dist;
                for j in 0..len {
                    out.push(out[start + j]);
                }
            }
        }
    }
}

/// Decodes a raw DEFLATE stream from the start of `data`; returns the bytes and how many
/// input bytes the stream took.
pub fn inflate(data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut bits = Bits { data, pos: 0, buf: 0, count: 0 };
    let mut out = Vec::new();
    let fixed = fixed_codes();
    loop {
        let last = bits.bits(1)? == 1;
        match bits.bits(2)? {
            0 => {
                bits.align();
                let len = bits.bits(16)?;
                let nlen = bits.bits(16)?;
                if len != !nlen & 0xffff {
                    return Err("a stored block's length does not match its complement".into());
                }
                // The bit buffer is byte-aligned and empty after reading 32 bits.
                let len = len as usize;
                let end = bits.pos.checked_add(len).filter(|&e| e <= data.len()).ok_or("a stored block ends past the data")?;
                out.extend_from_slice(&data[bits.pos..end]);
                bits.pos = end;
            }
            1 => inflate_codes(&mut bits, &mut out, &fixed.0, &fixed.1)?,
            2 => {
                let (l, d) = dynamic_codes(&mut bits)?;
                inflate_codes(&mut bits, &mut out, &l, &d)?;
            }
            _ => return Err("a block of reserved type 3".into()),
        }
        if last {
            break;
        }
    }
    bits.align();
    let unread = (bits.count / 8) as usize;
    Ok((out, bits.pos - unread))
}

/// The CRC-32 of gzip (and PNG, zip).
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *t = c;
    }
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Whether `data` starts like a gzip file.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Decodes a gzip file (all its members, concatenated).
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let d = &data[pos..];
        if d.len() < 18 || !is_gzip(d) || d[2] != 8 {
            return Err("not a gzip (deflate) member".into());
        }
        let flags = d[3];
        let mut p = 10;
        let need = |p: usize| if p > d.len() { Err("a truncated gzip header".to_string()) } else { Ok(()) };
        if flags & 4 != 0 {
            need(p + 2)?;
            p += 2 + u16::from_le_bytes([d[p], d[p + 1]]) as usize;
        }
        for bit in [8u8, 16] {
            if flags & bit != 0 {
                p += d.get(p..).and_then(|s| s.iter().position(|&b| b == 0)).ok_or("a truncated gzip header")? + 1;
            }
        }
        if flags & 2 != 0 {
            p += 2;
        }
        need(p)?;
        let (member, used) = inflate(&d[p..])?;
        let t = p + used;
        need(t + 8)?;
        let crc = u32::from_le_bytes(d[t..t + 4].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(d[t + 4..t + 8].try_into().expect("4 bytes"));
        if crc32(&member) != crc || member.len() as u32 != size {
            return Err("the gzip checksum or size does not match the data".into());
        }
        out.extend_from_slice(&member);
        pos += t + 8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf 'hello hello hello hello, chanasc!\n' | gzip -9n` (fixed Huffman codes).
    const FIXED: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0x75, 0x14, 0x92,
        0x33, 0x12, 0xf3, 0x12, 0x8b, 0x93, 0x15, 0xb9, 0x00, 0x6d, 0xc7, 0xc1, 0xd5, 0x22, 0x00, 0x00, 0x00,
    ];

    /// A raw DEFLATE stream with a dynamic Huffman block (zlib level 9 of the text below).
    const DYNAMIC: &[u8] = &[
        0x0d, 0xc8, 0x49, 0x0d, 0x00, 0x00, 0x0c, 0xc3, 0x30, 0x2a, 0xa3, 0xd6, 0x23, 0xfc, 0x29, 0xac, 0x9f, 0x44, 0xb2, 0xa8, 0x7c, 0x04,
        0x84, 0x76, 0x57, 0x22, 0xa5, 0xf1, 0x68, 0xc6, 0xd5, 0xeb, 0x03,
    ];

    #[test]
    fn dynamic_huffman_block() {
        let (out, used) = inflate(DYNAMIC).unwrap();
        assert_eq!(out, b"aedab eceeaea ecbdaaecdedcbeeaaeae dbeae");
        assert_eq!(used, DYNAMIC.len());
    }

    #[test]
    fn fixed_huffman_member() {
        assert_eq!(gunzip(FIXED).unwrap(), b"hello hello hello hello, chanasc!\n");
    }

    #[test]
    fn stored_blocks_and_checksums() {
        let payload = b"stored data";
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        gz.extend([1u8, payload.len() as u8, 0, !(payload.len() as u8), 0xff]);
        gz.extend(payload);
        gz.extend(crc32(payload).to_le_bytes());
        gz.extend((payload.len() as u32).to_le_bytes());
        assert_eq!(gunzip(&gz).unwrap(), payload);
        // A wrong checksum is an error.
        let n = gz.len();
        gz[n - 5] ^= 1;
        assert!(gunzip(&gz).unwrap_err().contains("checksum"));
        // Truncated data is an error, not a panic.
        for cut in 0..FIXED.len() {
            assert!(gunzip(&FIXED[..cut]).is_err() || cut == 0);
        }
    }
}
