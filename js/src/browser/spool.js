// The browser's spool: every fragment is written to IndexedDB before it is sent and deleted only once the
// server acknowledged it (stored + fsynced), so a lost link, a closed laptop lid or a reloaded page loses
// nothing: the uplink resends what is left (docs/ingest.md §3, as the native recorder's on-disk spool).
//   fragments: key [session_id, channel_id, seq] -> {session_id, channel_id, seq, bytes: ArrayBuffer}
//   sessions:  key session_id -> {session_id, token, expires_at, api_url, proxy_path, reach, saved_at}
//   rejected:  fragments the server refused (kept, as the native recorder keeps them)
const DB = "vdbnb-recorder";
const VERSION = 1;

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
  });
}

let opening = null;
export function openSpool() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const r = indexedDB.open(DB, VERSION);
      r.onupgradeneeded = () => {
        const db = r.result;
        db.createObjectStore("fragments", { keyPath: ["session_id", "channel_id", "seq"] });
        db.createObjectStore("sessions", { keyPath: "session_id" });
        db.createObjectStore("rejected", { keyPath: ["session_id", "channel_id", "seq"] });
      };
      r.onsuccess = () => resolve(new Spool(r.result));
      r.onerror = () => { opening = null; reject(r.error); };
    });
  }
  return opening;
}

export class Spool {
  constructor(db) { this.db = db; }

  async put(sessionId, channelId, seq, bytes) {
    const tx = this.db.transaction("fragments", "readwrite");
    const buf = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    tx.objectStore("fragments").put({ session_id: sessionId, channel_id: channelId, seq, bytes: buf });
    await done(tx);
  }

  async get(sessionId, channelId, seq) {
    const tx = this.db.transaction("fragments", "readonly");
    const row = await req(tx.objectStore("fragments").get([sessionId, channelId, seq]));
    return row ? new Uint8Array(row.bytes) : null;
  }

  async remove(sessionId, channelId, seq) {
    const tx = this.db.transaction("fragments", "readwrite");
    tx.objectStore("fragments").delete([sessionId, channelId, seq]);
    await done(tx);
  }

  // Drop every fragment of the channel up to `last` (the server's contiguous high-water mark).
  async prune(sessionId, channelId, last) {
    const tx = this.db.transaction("fragments", "readwrite");
    tx.objectStore("fragments").delete(IDBKeyRange.bound([sessionId, channelId, 0], [sessionId, channelId, last]));
    await done(tx);
  }

  async reject(sessionId, channelId, seq, why) {
    const tx = this.db.transaction(["fragments", "rejected"], "readwrite");
    const row = await req(tx.objectStore("fragments").get([sessionId, channelId, seq]));
    if (row) tx.objectStore("rejected").put({ ...row, why });
    tx.objectStore("fragments").delete([sessionId, channelId, seq]);
    await done(tx);
  }

  // [{channel_id, seq}] of a session still waiting for an ack, in seq order (channels interleaved).
  async pending(sessionId) {
    const tx = this.db.transaction("fragments", "readonly");
    const range = IDBKeyRange.bound([sessionId], [sessionId, []]);
    const keys = await req(tx.objectStore("fragments").getAllKeys(range));
    return keys.map(([, channel_id, seq]) => ({ channel_id, seq })).sort((a, b) => a.seq - b.seq);
  }

  async saveSession(info) {
    const tx = this.db.transaction("sessions", "readwrite");
    tx.objectStore("sessions").put({ ...info, saved_at: Date.now() });
    await done(tx);
  }

  async sessions() {
    const tx = this.db.transaction("sessions", "readonly");
    return req(tx.objectStore("sessions").getAll());
  }

  // Forget a session once nothing of it waits any more.
  async forgetIfEmpty(sessionId) {
    if ((await this.pending(sessionId)).length) return false;
    const tx = this.db.transaction("sessions", "readwrite");
    tx.objectStore("sessions").delete(sessionId);
    await done(tx);
    return true;
  }
}
