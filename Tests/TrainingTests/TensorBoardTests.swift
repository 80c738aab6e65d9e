import Foundation
import Config
import Reporting
@testable import Training
import XCTest

/// The TensorBoard event format written by hand: CRC32C against published vectors, TFRecord framing (every
/// corrupted byte is caught), Event bytes against the protobuf library's encoding, and the writer's files.
/// Tests/TrialDataTests/TensorBoardEndToEndTests.swift reads real runs back with TensorBoard itself.
final class TensorBoardTests: XCTestCase {
    func testCRC32CKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of ones, ascending.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        // TensorBoard's masked_crc32c(b"123456789").
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    func testEventBytesEqualTheProtobufLibrarys() {
        // event_pb2.Event(wall_time=1.5, step=300, summary=Summary(value=[Value(tag='train/loss', simple_value=2.5),
        // Value(tag='val/loss', simple_value=-0.125)])).SerializeToString() (tensorboard 2.21).
        let scalars = "09000000000000f83f10ac022a240a110a0a747261696e2f6c6f737315000020400a0f0a0876616c2f6c6f737315000000be"
        XCTAssertEqual(hex(TensorBoardEvent.scalars(wallTime: 1.5, step: 300, [("train/loss", 2.5), ("val/loss", -0.125)])), scalars)
        XCTAssertEqual(hex(TensorBoardEvent.fileVersion(wallTime: 1.5)), "09000000000000f83f1a0d627261696e2e4576656e743a32")
    }

    func testFramingRoundTripsAndEveryCorruptedByteIsCaught() {
        let payloads = [TensorBoardEvent.fileVersion(wallTime: 2), TensorBoardEvent.scalars(wallTime: 3, step: 1, [("a", 1)]), []]
        let file = payloads.flatMap(tfRecord)
        XCTAssertEqual(readTFRecords(file).map { $0.map(hex) }, payloads.map(hex))
        let first = tfRecord(payloads[0])
        XCTAssertEqual(Array(first[0..<8]), [UInt8(payloads[0].count), 0, 0, 0, 0, 0, 0, 0], "uint64 little-endian length")
        XCTAssertEqual(first.count, 8 + 4 + payloads[0].count + 4)
        // A flipped bit anywhere (length, either CRC, data) is refused; so is a truncated file.
        for i in file.indices {
            var bad = file
            bad[i] ^= 0x10
            XCTAssertNil(readTFRecords(bad), "byte \(i) flipped")
        }
        XCTAssertNil(readTFRecords(Array(file.dropLast())))
    }

    func testWriterFilesAndMetricsRecordsTags() throws {
        let dir = NSTemporaryDirectory() + "cladmop-tb-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let a = try TensorBoardWriter(dir: dir, now: now), b = try TensorBoardWriter(dir: dir, now: now)
        let name = URL(fileURLWithPath: a.path).lastPathComponent
        XCTAssertTrue(name.hasPrefix("events.out.tfevents.1700000000."), name)
        XCTAssertEqual(b.path, a.path + ".1", "a second writer in the same second gets its own file, sorting after")
        let record = EvalRecord(step: 12, epoch: 3, valLoss: 1.25, valTop1C2dm: 0.5, valTop5C2dm: nil, valTop1Dm2c: .nan, valTop5Dm2c: 1,
                                valSize: 7, chanceTop1: 1 / 7, best: true)
        try a.add(step: record.scalarStep, scalars: record.scalars, wallTime: 5)
        try a.add(step: 13, scalars: [("x", nil)], wallTime: 6)            // nothing finite: no event
        let records = try XCTUnwrap(readTFRecords(Array(try Data(contentsOf: URL(fileURLWithPath: a.path)))))
        XCTAssertEqual(records.count, 2)
        XCTAssertEqual(hex(records[0]), hex(TensorBoardEvent.fileVersion(wallTime: 1_700_000_000)))
        // nil (top-5 C->DM) and NaN (top-1 DM->C) are left out, as metrics.jsonl writes them as null.
        XCTAssertEqual(hex(records[1]), hex(TensorBoardEvent.scalars(wallTime: 5, step: 12, [("val/loss", 1.25), ("val/top1_c2dm", 0.5),
                                                                                          ("val/top5_dm2c", 1), ("val/chance_top1", Float(1.0 / 7)),
                                                                                          ("val/epoch", 3)])))
    }

    /// A full disk while appending to metrics.jsonl names the log (the message had been "a file: No space left on
    /// device"). /dev/full refuses every write with ENOSPC.
    func testAFailedMetricsWriteNamesTheLog() throws {
        let log = try MetricsLog(path: "/dev/full")
        XCTAssertThrowsError(try log.write(["step": 1])) { error in
            XCTAssertTrue("\(error)".contains("/dev/full: cannot append a record") && "\(error)".contains("No space left"), "\(error)")
        }
    }

    /// A metrics.jsonl whose last record lost its newline (appends are not fsynced; a power loss can cut the file
    /// after the record's closing brace): a resumed run's first record had been glued to it, and both lines no longer
    /// decoded (a report and sweep-report read neither). Now the line is ended before the first append, whether the
    /// resume drops records (`continuingAfter`) or keeps them all.
    func testAResumedLogEndsACutLastLineBeforeAppending() throws {
        let dir = NSTemporaryDirectory() + "cladmop-metrics-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for continuing in [nil, 2, 1] as [Int?] {
            let path = dir + "/metrics.jsonl"
            try Data("{\"type\":\"train\",\"step\":1}\n{\"type\":\"train\",\"step\":2}".utf8).write(to: URL(fileURLWithPath: path))
            let log = try MetricsLog(path: path, continuingAfter: continuing)
            try log.write(StepRecord(type: "train", step: 3))
            let steps = MetricsLog.records(of: "train", in: path, as: StepProbe.self).map(\.step)
            XCTAssertEqual(steps, continuing == 1 ? [1, 3] : [1, 2, 3], "continuingAfter \(String(describing: continuing))")
            XCTAssertTrue(try String(contentsOfFile: path, encoding: .utf8).hasSuffix("}\n"))
        }
    }

    struct StepProbe: Decodable { var step: Int }
    struct StepRecord: Encodable { var type: String, step: Int }

    func testStoredSpecsWithoutALogSectionDecodeWithTheDefault() throws {
        let spec = try RunSpec(Config(file: nil, overrides: ["log.tensorboard=true"]))
        XCTAssertTrue(spec.log.tensorboard)
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(spec)) as? [String: Any])
        XCTAssertNotNil(json["log"])
        XCTAssertEqual(try JSONDecoder().decode(RunSpec.self, from: JSONEncoder().encode(spec)), spec)
        json["log"] = nil       // a checkpoint written before log.tensorboard existed
        let old = try JSONDecoder().decode(RunSpec.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertFalse(old.log.tensorboard)
        XCTAssertEqual(old.train, spec.train)
        // ... and re-encodes to the same JSON, so its metadataChecksum (compact JSON, sorted keys) still verifies
        // (TorchLoaderFixtureTests loads such a checkpoint, written before the log section existed).
        let sorted = JSONEncoder(); sorted.outputFormatting = [.sortedKeys]
        let oldBytes = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        let again = try JSONSerialization.data(withJSONObject: try JSONSerialization.jsonObject(with: sorted.encode(old)), options: [.sortedKeys])
        XCTAssertEqual(again, oldBytes)
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
