import Support
import Foundation
import NN
import XCTest

/// Round trip, and a corpus of damaged or hostile headers: each is an InputError naming the file and the problem.
final class SafetensorsTests: XCTestCase {
    /// This test's scratch folder (each test its own), removed after it.
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-st-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ header: String, payload: Int = 16, name: String, rawLength: UInt64? = nil) -> String {
        let path = dir + "/\(name).safetensors"
        var d = Data()
        var n = (rawLength ?? UInt64(header.utf8.count)).littleEndian
        d.append(Data(bytes: &n, count: 8))
        d.append(Data(header.utf8))
        d.append(Data(count: payload))
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: d), path)
        return path
    }

    func testRoundTrip() throws {
        let path = dir + "/ok.safetensors"
        let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [-1]
        try a.withUnsafeBufferPointer { pa in try b.withUnsafeBufferPointer { pb in
            try writeSafetensors(path: path, tensors: [("a", [2, 3], pa.baseAddress!), ("b", [1], pb.baseAddress!)], metadata: ["k": "v"])
        } }
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(try f.floats("a"), a)
        XCTAssertEqual(try f.floats("b"), b)
        XCTAssertEqual(f.metadata["k"], "v")
        XCTAssertEqual(f.tensors["a"]?.shape, [2, 3])
    }

    func testDamagedHeadersAreRefused() {
        let cases: [(String, String, Int, UInt64?, String)] = [
            ("short", "", 0, 3, "not a valid safetensors file"),
            ("length-beyond-file", "{}", 0, 1 << 40, "exceeds the file size"),
            ("not-json", "{nope", 16, nil, "header is not a JSON object"),
            ("json-array", "[1, 2]", 16, nil, "header is not a JSON object"),
            ("missing-fields", #"{"t": {"dtype": "F32"}}"#, 16, nil, "tensor t: needs dtype, shape and data_offsets"),
            ("unknown-dtype", #"{"t": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}"#, 16, nil, "unknown dtype F99"),
            ("negative-shape", #"{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, 16, nil, "invalid shape"),
            ("offsets-outside", #"{"t": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}"#, 16, nil, "outside the 16-byte payload"),
            ("offsets-reversed", #"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}"#, 16, nil, "outside the 16-byte payload"),
            ("size-mismatch", #"{"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, 16, nil, "8 bytes for shape [3] of F32 (expected 12)"),
            ("overlap", #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, 16, nil, "overlap"),
            ("huge-declared", #"{"t": {"dtype": "F32", "shape": [1099511627775, 1099511627775], "data_offsets": [0, 4]}}"#, 16, nil, "outside the 16-byte payload"),
            // 2^39 x 2^23 elements fit an Int, their 8-byte size does not (a trap in a debug build before it was checked).
            ("bytes-beyond-64-bits", #"{"t": {"dtype": "F64", "shape": [549755813888, 8388608], "data_offsets": [0, 0]}}"#, 16, nil, "expected more than 2^63"),
            ("metadata-not-string", #"{"__metadata__": {"k": 1}}"#, 16, nil, "__metadata__.k is not a string"),
        ]
        for (name, header, payload, raw, expected) in cases {
            let path = write(header, payload: payload, name: name, rawLength: raw)
            XCTAssertThrowsError(try SafetensorsFile(path: path), name) { error in
                XCTAssertTrue(error is InputError, name)
                XCTAssertTrue("\(error)".hasPrefix(path + ": "), "\(name): \(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(name): expected '\(expected)' in \(error)")
            }
        }
        // A wrong dtype for a float read and a missing tensor.
        let path = write(#"{"t": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}"#, payload: 4, name: "int")
        let f = try! SafetensorsFile(path: path)
        XCTAssertThrowsError(try f.floats("t")) { XCTAssertTrue("\($0)".contains("dtype I32, expected a floating-point type")) }
        XCTAssertThrowsError(try f.floats("nope")) { XCTAssertTrue("\($0)".contains("missing tensor nope")) }
        XCTAssertThrowsError(try f.copy("t", shape: [2], into: FloatPtr.allocate(capacity: 2))) { XCTAssertTrue("\($0)".contains("has shape [1], expected [2]")) }
    }
}
