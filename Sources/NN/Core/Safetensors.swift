import Support
import Foundation

/// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length,
/// a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}},
/// then the tensor bytes. Reading validates every field, so a damaged or hostile file is an InputError.
public final class SafetensorsFile {
    public struct Tensor {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    public let path: String
    public let tensors: [String: Tensor]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    static let sizes = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1]

    public convenience init(path: String) throws {
        try self.init(mapped: MappedFile(path: path), path: path)
    }

    /// The file already mapped (`Checkpoints.load` checks the checksum of these very bytes before parsing them).
    public init(mapped: MappedFile, path: String) throws {
        self.path = path
        file = mapped
        (tensors, metadata, dataStart) = try Self.parseHeader(file.bytes, path: path)
    }

    /// `checksum64` of the whole file, header and payload (`seed` chains it after other bytes).
    public func checksum(seed: UInt64) -> UInt64 { checksum64(file.bytes, seed: seed) }

    /// Validates the header of a whole safetensors file held in `bytes` (`path` only names it in errors):
    /// the tensors, the metadata and where the payload starts.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws
        -> (tensors: [String: Tensor], metadata: [String: String], dataStart: Int) {
        func bad(_ m: String) -> InputError { InputError(file: path, "not a valid safetensors file: \(m)") }
        guard bytes.count >= 8 else { throw bad("shorter than the 8-byte header length") }
        let headerLength = bytes.loadUnaligned(as: UInt64.self)
        guard headerLength <= UInt64(bytes.count - 8), headerLength <= 100_000_000 else {
            throw bad("header length \(headerLength) exceeds the file size \(bytes.count)")
        }
        let dataStart = 8 + Int(headerLength)
        let json = Data(bytes[8..<dataStart])
        guard let header = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        if let key = duplicateJSONKey(json) { throw bad("header key \(key) appears twice in one object; expected each key once") }
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        let payload = bytes.count - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw bad("__metadata__.\(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any], let dtype = t["dtype"] as? String,
                  let shape = t["shape"] as? [Int], let offsets = t["data_offsets"] as? [Int], offsets.count == 2 else {
                throw bad("tensor \(name): needs dtype, shape and data_offsets [begin, end]")
            }
            guard let size = sizes[dtype] else { throw bad("tensor \(name): unknown dtype \(dtype)") }
            guard shape.allSatisfy({ $0 >= 0 && $0 < 1 << 40 }) else { throw bad("tensor \(name): invalid shape \(shape)") }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            guard !overflow, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload else {
                throw bad("tensor \(name): data_offsets \(offsets) outside the \(payload)-byte payload")
            }
            let (bytes, tooMany) = count.multipliedReportingOverflow(by: size)
            guard !tooMany, offsets[1] - offsets[0] == bytes else {
                throw bad("tensor \(name): \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype) (expected \(tooMany ? "more than 2^63" : String(bytes)))")
            }
            tensors[name] = Tensor(name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
        }
        // Tensors must not overlap.
        let sorted = tensors.values.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.begin < a.end {
            throw bad("tensors \(a.name) and \(b.name) overlap")
        }
        return (tensors, metadata, dataStart)
    }

    /// The tensor's values converted to Float32 (F32, F16, BF16 and F64 are accepted).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw InputError(file: path, "missing tensor \(name)") }
        let raw = UnsafeRawBufferPointer(rebasing: file.bytes[(dataStart + t.begin)..<(dataStart + t.end)])
        switch t.dtype {
        case "F32":
            return (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        case "F64":
            return (0..<(raw.count / 8)).map { Float(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self)) }
        case "F16":
            return (0..<(raw.count / 2)).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
        case "BF16":
            return (0..<(raw.count / 2)).map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) << 16) }
        default:
            throw InputError(file: path, "tensor \(name) has dtype \(t.dtype), expected a floating-point type")
        }
    }

    /// Copies the tensor into `into` after checking its shape and that every value is finite (a model with a NaN or
    /// infinite parameter only predicts NaN).
    public func copy(_ name: String, shape: [Int], into: UnsafeMutablePointer<Float>) throws {
        guard let t = tensors[name] else { throw InputError(file: path, "missing tensor \(name)") }
        guard t.shape == shape else { throw InputError(file: path, "tensor \(name) has shape \(t.shape), expected \(shape)") }
        let v = try floats(name)
        if let i = v.firstIndex(where: { !$0.isFinite }) {
            throw InputError(file: path, "tensor \(name) holds \(v[i]) at index \(i) (\(v.count { !$0.isFinite }) non-finite values"
                             + (t.dtype == "F64" && v[i].isInfinite ? " in float32: an F64 value beyond ±3.4e38 overflows it" : "")
                             + "); expected finite numbers: the file is damaged, or was written by a run that diverged")
        }
        v.withUnsafeBufferPointer { into.update(from: $0.baseAddress!, count: v.count) }
    }
}

/// Writes Float32 tensors (in the given order) in the safetensors format, atomically.
public func writeSafetensors(path: String, tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)],
                             metadata: [String: String], replacingInput: Bool = false) throws {
    var header: [String: Any] = ["__metadata__": metadata]
    var offset = 0
    for t in tensors {
        let bytes = t.shape.reduce(1, *) * 4
        header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
        offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while (8 + json.count) % 8 != 0 { json.append(0x20) }   // pad with spaces so the data is aligned
    try writeFileAtomically(path, replacingInput: replacingInput) { handle in
        var length = UInt64(json.count).littleEndian
        try handle.write(contentsOf: Data(bytes: &length, count: 8))
        try handle.write(contentsOf: json)
        for t in tensors {
            try handle.write(contentsOf: Data(bytes: t.data, count: t.shape.reduce(1, *) * 4))
        }
    }
}
