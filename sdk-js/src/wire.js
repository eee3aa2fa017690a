// The `transform-rows` wire format in plain JavaScript: the row batch the host sends and the
// verdicts a plugin returns, byte for byte as `pgmorph-wire` (the Rust crate the host uses)
// writes and reads them (format in `wit/pgmorph-plugin-0.1.0/plugin.wit`; integers
// little-endian).
//
// A decoded cell is `null` (SQL NULL), `UNCHANGED` (an unchanged TOAST value the source did not
// send) or a `Uint8Array` view of the text's bytes in the decoded buffer (no copy). Decoding
// never reads past the input and fails with a `WireError` naming the byte, as the Rust decoder
// does.

export const UNCHANGED = Symbol.for('pgmorph.unchanged');

const TAG_NULL = 0, TAG_UNCHANGED = 1, TAG_TEXT = 2;
const FLAG_OLD = 1, FLAG_NEW = 2;
export const KEEP = 0, MODIFIED = 1, SKIP = 2, ERROR = 3, ROUTE = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** Malformed bytes; the message matches the Rust decoder's. */
export class WireError extends Error {}

const truncated = (what, at, needed, left) =>
  new WireError(`truncated at byte ${at}: ${what} needs ${needed} bytes, ${left} left`);

const u32At = (buf, at) => (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16)) + buf[at + 3] * 0x1000000;

class Reader {
  constructor(buf) {
    this.buf = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
    this.pos = 0;
  }

  left() {
    return this.buf.length - this.pos;
  }

  u8(what) {
    if (this.pos >= this.buf.length) throw truncated(what, this.pos, 1, 0);
    return this.buf[this.pos++];
  }

  u32(what) {
    if (this.left() < 4) throw truncated(what, this.pos, 4, this.left());
    const n = u32At(this.buf, this.pos);
    this.pos += 4;
    return n;
  }

  text(what) {
    const n = this.u32(what);
    if (n > this.left()) {
      throw new WireError(`bad length ${n} at byte ${this.pos - 4}: only ${this.left()} bytes follow`);
    }
    const start = this.pos;
    this.pos += n;
    return decoder.decode(this.buf.subarray(start, this.pos));
  }

  row(width) {
    const buf = this.buf;
    const end = buf.length;
    let pos = this.pos;
    const cells = new Array(width);
    for (let i = 0; i < width; i++) {
      if (pos >= end) throw truncated('a cell tag', pos, 1, 0);
      const tag = buf[pos];
      if (tag === TAG_TEXT) {
        if (end - pos - 1 < 4) throw truncated('a text length', pos + 1, 4, end - pos - 1);
        const n = u32At(buf, pos + 1);
        const start = pos + 5;
        if (n > end - start) {
          throw new WireError(`bad length ${n} at byte ${pos + 1}: only ${end - start} bytes follow`);
        }
        pos = start + n;
        cells[i] = buf.subarray(start, pos);
      } else if (tag === TAG_NULL) {
        pos += 1;
        cells[i] = null;
      } else if (tag === TAG_UNCHANGED) {
        pos += 1;
        cells[i] = UNCHANGED;
      } else {
        throw new WireError(`unknown cell tag ${tag} at byte ${pos}`);
      }
    }
    this.pos = pos;
    return cells;
  }

  rows(width) {
    const flags = this.u8('the row flags');
    const old = flags & FLAG_OLD ? this.row(width) : null;
    const neu = flags & FLAG_NEW ? this.row(width) : null;
    return [old, neu];
  }

  finish(count, items) {
    const extra = this.left();
    if (extra) throw new WireError(`${extra} bytes left after ${count} ${items} (wrong row width or count)`);
  }
}

/**
 * Decodes a batch whose rows have `width` cells: `[{ op, old, new }]`, op the code (0-3) and
 * each row an array of cells, or null when absent.
 */
export function decodeBatch(buf, width) {
  const r = new Reader(buf);
  const count = r.u32('the change count');
  const changes = [];
  for (let i = 0; i < count; i++) {
    const op = r.u8('an operation');
    if (op > 3) throw new WireError(`unknown operation ${op} for change ${i}`);
    const [old, neu] = r.rows(width);
    changes.push({ op, old, new: neu });
  }
  r.finish(count, 'changes');
  return changes;
}

/** Decodes `count` verdicts: `{ code, old, new }` for MODIFIED, `{ code, text }` for ERROR and ROUTE. */
export function decodeVerdicts(buf, count, width) {
  const r = new Reader(buf);
  const verdicts = [];
  for (let i = 0; i < count; i++) {
    const code = r.u8('a verdict');
    if (code === KEEP || code === SKIP) {
      verdicts.push({ code });
    } else if (code === MODIFIED) {
      const [old, neu] = r.rows(width);
      verdicts.push({ code, old, new: neu });
    } else if (code === ERROR) {
      verdicts.push({ code, text: r.text('an error message') });
    } else if (code === ROUTE) {
      verdicts.push({ code, text: r.text('a route') });
    } else {
      throw new WireError(`unknown verdict ${code} for change ${i}`);
    }
  }
  r.finish(count, 'verdicts');
  return verdicts;
}

/** A growable byte buffer the encoders append to. */
export class Writer {
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  u32(n) {
    this.reserve(4);
    const b = this.buf;
    b[this.len] = n & 0xff;
    b[this.len + 1] = (n >>> 8) & 0xff;
    b[this.len + 2] = (n >>> 16) & 0xff;
    b[this.len + 3] = (n >>> 24) & 0xff;
    this.len += 4;
  }

  bytes(data) {
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  /** The bytes written so far. */
  finish() {
    return this.buf.subarray(0, this.len);
  }
}

const cellBytes = (cell) => (typeof cell === 'string' ? encoder.encode(cell) : cell);

function writeRow(w, row) {
  for (const cell of row) {
    if (cell === null || cell === undefined) {
      w.u8(TAG_NULL);
    } else if (cell === UNCHANGED) {
      w.u8(TAG_UNCHANGED);
    } else {
      const data = cellBytes(cell);
      w.u8(TAG_TEXT);
      w.u32(data.length);
      w.bytes(data);
    }
  }
}

function writeRows(w, old, neu) {
  w.u8((old ? FLAG_OLD : 0) | (neu ? FLAG_NEW : 0));
  if (old) writeRow(w, old);
  if (neu) writeRow(w, neu);
}

/** Starts a batch: the number of changes that follow. */
export const writeCount = (w, count) => w.u32(count);

/** One change; cells are null, UNCHANGED, strings or Uint8Arrays. */
export function writeChange(w, op, old, neu) {
  w.u8(op);
  writeRows(w, old, neu);
}

/** A whole batch from `{ op, old, new }` changes. */
export function encodeBatch(changes) {
  const w = new Writer();
  writeCount(w, changes.length);
  for (const c of changes) writeChange(w, c.op, c.old, c.new);
  return w.finish();
}

export const writeKeep = (w) => w.u8(KEEP);

export function writeModified(w, old, neu) {
  w.u8(MODIFIED);
  writeRows(w, old, neu);
}

export const writeSkip = (w) => w.u8(SKIP);

function writeText(w, code, text) {
  const data = encoder.encode(text);
  w.u8(code);
  w.u32(data.length);
  w.bytes(data);
}

export const writeError = (w, message) => writeText(w, ERROR, message);
export const writeRoute = (w, table) => writeText(w, ROUTE, table);

/** The text of a cell's bytes. */
export const cellText = (bytes) => decoder.decode(bytes);
