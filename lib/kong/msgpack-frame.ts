/**
 * Finds where one msgpack value ends without decoding it, skipping over str/bin payloads.
 * Lets the listener wait for a whole message before decoding it once: decoding on every
 * chunk (kong-pdk's listener) costs quadratic time on large request bodies (KONG.md §5).
 */
export type FrameScan = { complete: true; length: number } | { complete: false; needed: number };

/** Bytes after the type byte: [fixed header size, size of a length field (0 = none), length multiplier]. */
function sized(buf: Uint8Array, pos: number, lenBytes: 1 | 2 | 4): number | undefined {
  if (pos + lenBytes > buf.length) return undefined;
  let n = 0;
  for (let i = 0; i < lenBytes; i++) n = n * 256 + buf[pos + i]!;
  return n;
}

export function scanFrame(buf: Uint8Array): FrameScan {
  let pos = 0;
  let pending = 1; // values still to read
  while (pending > 0) {
    if (pos >= buf.length) return { complete: false, needed: pos + 1 };
    const b = buf[pos]!;
    pending--;
    let head = 1; // bytes of the type byte + fixed fields
    let payload = 0; // raw bytes to skip
    let children = 0;
    let lenBytes: 1 | 2 | 4 | 0 = 0;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b >= 0x80 && b <= 0x8f) children = 2 * (b & 0x0f);
    else if (b >= 0x90 && b <= 0x9f) children = b & 0x0f;
    else if (b >= 0xa0 && b <= 0xbf) payload = b & 0x1f;
    else {
      switch (b) {
        case 0xc4:
        case 0xd9:
          lenBytes = 1;
          break; // bin8, str8
        case 0xc5:
        case 0xda:
          lenBytes = 2;
          break; // bin16, str16
        case 0xc6:
        case 0xdb:
          lenBytes = 4;
          break; // bin32, str32
        case 0xc7:
          lenBytes = 1;
          head = 2;
          break; // ext8 (+type byte)
        case 0xc8:
          lenBytes = 2;
          head = 2;
          break; // ext16
        case 0xc9:
          lenBytes = 4;
          head = 2;
          break; // ext32
        case 0xca:
          head = 5;
          break;
        case 0xcb:
          head = 9;
          break;
        case 0xcc:
        case 0xd0:
          head = 2;
          break;
        case 0xcd:
        case 0xd1:
          head = 3;
          break;
        case 0xce:
        case 0xd2:
          head = 5;
          break;
        case 0xcf:
        case 0xd3:
          head = 9;
          break;
        case 0xd4:
          head = 3;
          break;
        case 0xd5:
          head = 4;
          break;
        case 0xd6:
          head = 6;
          break;
        case 0xd7:
          head = 10;
          break;
        case 0xd8:
          head = 18;
          break;
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf: {
          const bytes = b === 0xdc || b === 0xde ? 2 : 4;
          const n = sized(buf, pos + 1, bytes);
          if (n === undefined) return { complete: false, needed: pos + 1 + bytes };
          head = 1 + bytes;
          children = b >= 0xde ? 2 * n : n;
          break;
        }
        default:
          throw new Error(`invalid msgpack type byte 0x${b.toString(16)}`);
      }
    }
    if (lenBytes) {
      const n = sized(buf, pos + 1, lenBytes);
      if (n === undefined) return { complete: false, needed: pos + 1 + lenBytes };
      // ext types carry a type byte after the length; `head` counted it as 2 above
      head = 1 + lenBytes + (head === 2 ? 1 : 0);
      payload = n;
    }
    pos += head + payload;
    pending += children;
  }
  if (pos > buf.length) return { complete: false, needed: pos };
  return { complete: true, length: pos };
}
