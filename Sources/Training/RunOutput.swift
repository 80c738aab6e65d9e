import Support
import Config
import Foundation
import Reporting
import Communication

/// Appends one JSON object per line to metrics.jsonl (flushed after each line; resumed runs append). With
/// `tensorboard`, the scalars of each record (`ScalarRecord`) also go to a TensorBoard event file in the same
/// folder (a new one per log opened).
///
/// `continuingAfter: k` (a pretraining run resumed from its checkpoint at step k, or restarted from scratch with
/// k = 0): the records that the interrupted attempt wrote after step k, which this run writes again, are first
/// removed from an existing metrics.jsonl (rewritten atomically; a torn last line goes too), and
/// the event file starts with a restart at step k + 1. So each step appears once in both.
public final class MetricsLog {
    public let path: String
    let handle: FileHandle
    let events: TensorBoardWriter?
    public init(path: String, tensorboard: Bool = false, continuingAfter: Int? = nil) throws {
        self.path = path
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try makeDirectory(dir, option: "--run-dir")
        let existed = FileManager.default.fileExists(atPath: path)
        if existed, let step = continuingAfter { try Self.keepRecords(upTo: step, path: path) }
        // A copy of a run made with hard or symbolic links (cp -al, cp -rs) shares this file with the original:
        // appending would add this run's records to that one's log as well. The copy gets a file of its own first.
        var st = stat()
        if existed, lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK || st.st_nlink > 1 {
            let data = try readRegularFile(path, what: "metrics log (metrics.jsonl)")
            try writeFileAtomically(path, replacingInput: true) { try $0.write(contentsOf: data) }
        }
        if !existed { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, "cannot open for writing: \(String(cString: strerror(errno)))")
        }
        handle = h
        handle.seekToEndOfFile()
        // A last record cut before its newline (appends are not fsynced: a power loss may keep a record and lose the
        // byte after it, which `keepRecords` keeps as a whole record) would have the next record glued to it, both
        // then lost to every reader: the line is ended first.
        if existed, let tail = try? readTail(path, bytes: 1), let last = tail.last, last != 0x0A {
            do { try handle.write(contentsOf: Data([0x0A])) }
            catch { throw InputError(file: path, "cannot append a record: \(describeWriteError(error))") }
        }
        events = tensorboard ? try TensorBoardWriter(dir: dir, restartAt: existed ? continuingAfter.map { $0 + 1 } : nil) : nil
    }

    /// The records of `type` ("train", "eval", ...) in a metrics.jsonl, in order; lines of other types or that do not
    /// decode as `Record` are skipped (a resumed run's report plots its earlier steps from here).
    public static func records<Record: Decodable>(of type: String, in path: String, as _: Record.Type = Record.self) -> [Record] {
        guard let data = try? readRegularFile(path, what: "metrics log (metrics.jsonl)") else { return [] }
        let decoder = JSONDecoder()
        return data.split(separator: 0x0A, omittingEmptySubsequences: true).compactMap { line in
            guard (try? decoder.decode(RecordProbe.self, from: line))?.type == type else { return nil }
            return try? decoder.decode(Record.self, from: line)
        }
    }

    /// Refuses a metrics.jsonl with a line that is not a record cladmop writes (a JSON object with a string "type"), or
    /// a record of one of `types` that does not decode as its struct, naming the file and line. For a reader of a
    /// finished run's figures (sweep-report): `records` skips such lines, and a skipped evaluation changes the best one.
    public static func requireWellFormed(_ path: String, types: [String: any Decodable.Type]) throws {
        let data = try readRegularFile(path, what: "metrics log (metrics.jsonl)")
        let decoder = JSONDecoder()
        // Blank lines, carriage returns and NUL padding (a power loss can leave it) are not records, as for the Launch
        // scripts' check of a finished run (run_finished).
        for (i, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated()
        where !line.allSatisfy({ [0x20, 0x09, 0x0D, 0x00].contains($0) }) {
            guard let probe = try? decoder.decode(RecordProbe.self, from: line), let type = probe.type else {
                throw InputError(file: path, line: i + 1, "not a record (expected one JSON object with a string \"type\" per line, as cladmop writes)")
            }
            if let record = types[type] {
                do { _ = try decoder.decode(record, from: line) } catch {
                    throw InputError(file: path, line: i + 1, "a record of type \"\(type)\" that does not read as one (\(describeDecodingError(error, data: Data(line))))")
                }
            }
        }
    }

    /// What every record is asked first: its type and step (absent in some records).
    private struct RecordProbe: Decodable {
        var type: String?
        var step: Double?
    }

    /// Rewrites metrics.jsonl with the records of steps <= `step` (and those without a step), in their order.
    static func keepRecords(upTo step: Int, path: String) throws {
        let data = try readRegularFile(path, what: "metrics log (metrics.jsonl)")
        var kept: [Data] = [], dropped = 0
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            guard let record = try? JSONDecoder().decode(RecordProbe.self, from: line), record.step.map({ $0 <= Double(step) }) ?? true else {
                dropped += 1; continue
            }
            kept.append(line)
        }
        guard dropped > 0 else { return }
        try writeFileAtomically(path, replacingInput: true) { h in for line in kept { try h.write(contentsOf: line + [0x0A]) } }
    }
    public func write<Record: Encodable>(_ record: Record) throws {
        var data = try encodeJSON(record)
        data.append(0x0A)
        try WrittenFolders.check(writing: path)     // appending to the log of a folder removed meanwhile would lose the record
        // A full disk or a file size limit: name the log, and cut it back to its last whole record (what was written
        // of this one would stay a torn line until a resume drops it).
        let end = try? handle.offset()
        do { try handle.write(contentsOf: data) }
        catch {
            if let end {
                _ = ftruncate(handle.fileDescriptor, off_t(end))
                try? handle.seek(toOffset: end)
            }
            throw InputError(file: path, "cannot append a record: \(describeWriteError(error))")
        }
        if let events, let r = record as? ScalarRecord { try events.add(step: r.scalarStep, scalars: r.scalars) }
    }
}

/// Rank 0's progress: an updating line on a terminal, plain lines otherwise. Under mpirun a rank's stdout is
/// a pseudo-terminal even when mpirun's output goes to a file, so there the Launch/ scripts say whether
/// theirs is a terminal (CLADMOP_TTY=1).
final class ProgressLine {
    let enabled: Bool
    let tty: Bool = {
        isatty(STDOUT_FILENO) != 0 && (!launchedByMPI || ProcessInfo.processInfo.environment["CLADMOP_TTY"] == "1")
    }()
    var open = false
    init(enabled: Bool) { self.enabled = enabled }
    func update(_ text: String) {
        guard enabled else { return }
        if tty { print("\r\u{1B}[K" + text, terminator: ""); open = true } else { print(text) }
        flushStandardOutput()
    }
    func finish() { if enabled && open { print(""); open = false } }
}
