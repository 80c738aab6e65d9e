import Foundation
import Support

// TensorBoard event files without a protobuf dependency: TFRecord framing (length, masked CRC32C of the
// length, data, masked CRC32C of the data) around `Event` protobufs encoded by hand. TensorBoard reads every
// file named `*tfevents*` in a folder, in name order, and shows the folder as one run.

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven: crc32c("123456789") = 0xE3069283.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32).
    public static func masked<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// One TFRecord: uint64 length (little-endian), masked CRC32C of those 8 bytes, the data, masked CRC32C of the data.
public func tfRecord(_ data: [UInt8]) -> [UInt8] {
    let length = littleEndian(UInt64(data.count))
    return length + littleEndian(CRC32C.masked(length)) + data + littleEndian(CRC32C.masked(data))
}

/// A TFRecord file's payloads; nil when the framing or a CRC is wrong (a corrupt or truncated file).
public func readTFRecords(_ bytes: [UInt8]) -> [[UInt8]]? {
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
    var records: [[UInt8]] = [], at = 0
    while at < bytes.count {
        guard at + 16 <= bytes.count else { return nil }
        let header = Array(bytes[at..<at + 8])
        let length = header.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard u32(at + 8) == CRC32C.masked(header), length <= UInt64(bytes.count - at - 16) else { return nil }
        let start = at + 12, end = start + Int(length)
        let data = Array(bytes[start..<end])
        guard u32(end) == CRC32C.masked(data) else { return nil }
        records.append(data)
        at = end + 4
    }
    return records
}

func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] { (0..<T.bitWidth / 8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

/// The protobuf wire format, just what `Event` needs.
enum Protobuf {
    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        return out + [UInt8(v)]
    }
    static func key(_ field: Int, _ wire: Int) -> [UInt8] { varint(UInt64(field << 3 | wire)) }
    static func bytes(_ field: Int, _ data: [UInt8]) -> [UInt8] { key(field, 2) + varint(UInt64(data.count)) + data }
    static func double(_ field: Int, _ v: Double) -> [UInt8] { key(field, 1) + littleEndian(v.bitPattern) }
    static func float(_ field: Int, _ v: Float) -> [UInt8] { key(field, 5) + littleEndian(v.bitPattern) }
    static func int64(_ field: Int, _ v: Int64) -> [UInt8] { key(field, 0) + varint(UInt64(bitPattern: v)) }
}

/// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5
/// (Summary: value = 1, repeated; Summary.Value: tag = 1 (string), simple_value = 2 (float)), session_log = 7.
public enum TensorBoardEvent {
    public static func fileVersion(wallTime: Double) -> [UInt8] {
        Protobuf.double(1, wallTime) + Protobuf.bytes(3, Array("brain.Event:2".utf8))
    }

    /// A restart at `step` (session_log = 7, SessionLog.status = 1, START): TensorBoard then drops the events of
    /// earlier files at steps >= `step`, those of an attempt that the resumed run replays.
    public static func sessionStart(wallTime: Double, step: Int) -> [UInt8] {
        Protobuf.double(1, wallTime) + Protobuf.int64(2, Int64(step)) + Protobuf.bytes(7, Protobuf.key(1, 0) + Protobuf.varint(1))
    }

    public static func scalars(wallTime: Double, step: Int, _ values: [(tag: String, value: Float)]) -> [UInt8] {
        let summary = values.flatMap { Protobuf.bytes(1, Protobuf.bytes(1, Array($0.tag.utf8)) + Protobuf.float(2, $0.value)) }
        return Protobuf.double(1, wallTime) + Protobuf.int64(2, Int64(step)) + Protobuf.bytes(5, summary)
    }
}

/// Appends scalar summaries to `DIR/events.out.tfevents.<unix time>.<host>`, a new file per writer (a resumed
/// run adds one, starting with a restart event at the step it continues from, so TensorBoard shows each step once).
/// Every record is written to the file at once (no buffering), like metrics.jsonl: an event file is an append-only
/// log, read while it grows.
public final class TensorBoardWriter {
    public let path: String
    let handle: FileHandle

    /// `restartAt`: the first step this writer writes when it continues an earlier run (see `sessionStart`).
    public init(dir: String, now: Date = Date(), restartAt: Int? = nil) throws {
        try makeDirectory(dir, option: "--run-dir")
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? String(cString: name) : "localhost"
        let base = "\(dir)/events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(host.isEmpty ? "localhost" : host.replacingOccurrences(of: "/", with: "_"))"
        // Two writers started in the same second (a quick resume) get distinct files, later ones sorting after.
        var candidate = base, n = 0
        while FileManager.default.fileExists(atPath: candidate) { n += 1; candidate = "\(base).\(n)" }
        path = candidate
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, "cannot create the TensorBoard event file: \(String(cString: strerror(errno)))")
        }
        handle = h
        try write(TensorBoardEvent.fileVersion(wallTime: now.timeIntervalSince1970))
        if let restartAt { try write(TensorBoardEvent.sessionStart(wallTime: now.timeIntervalSince1970, step: restartAt)) }
    }

    /// One event at `step` with the finite values among `scalars` (nil and NaN are left out, as in metrics.jsonl).
    public func add(step: Int, scalars: [(tag: String, value: Double?)], wallTime: Double = Date().timeIntervalSince1970) throws {
        let values = scalars.compactMap { s in s.value.flatMap { $0.isFinite ? (s.tag, Float($0)) : nil } }
        guard !values.isEmpty else { return }
        try write(TensorBoardEvent.scalars(wallTime: wallTime, step: step, values))
    }

    func write(_ event: [UInt8]) throws {
        do { try handle.write(contentsOf: Data(tfRecord(event))) }
        catch { throw InputError(file: path, "cannot write the TensorBoard event file: \(describeWriteError(error))") }
    }
}
