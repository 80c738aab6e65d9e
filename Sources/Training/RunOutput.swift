import Support
import Config
import Foundation
import Reporting

/// Appends one JSON object per line to metrics.jsonl (flushed after each line; resumed runs append). With
/// `tensorboard`, the scalars of each record (`ScalarRecord`) also go to a TensorBoard event file in the same
/// folder (a new one per log opened).
public final class MetricsLog {
    let handle: FileHandle
    let events: TensorBoardWriter?
    public init(path: String, tensorboard: Bool = false) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try makeDirectory(dir, option: "--run-dir")
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw InputError(file: path, "cannot open for writing: \(String(cString: strerror(errno)))")
        }
        handle = h
        handle.seekToEndOfFile()
        events = tensorboard ? try TensorBoardWriter(dir: dir) : nil
    }
    public func write<Record: Encodable>(_ record: Record) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = try encoder.encode(record)
        data.append(0x0A)
        try handle.write(contentsOf: data)
        if let events, let r = record as? ScalarRecord { try events.add(step: r.scalarStep, scalars: r.scalars) }
    }
}

/// Rank 0's progress: an updating line on a terminal, plain lines otherwise. Under mpirun a rank's stdout is
/// a pseudo-terminal even when mpirun's output goes to a file, so there the Launch/ scripts say whether
/// theirs is a terminal (CLADMOP_TTY=1).
final class ProgressLine {
    let enabled: Bool
    let tty: Bool = {
        let env = ProcessInfo.processInfo.environment
        let underMPI = env["OMPI_COMM_WORLD_SIZE"] != nil
        return isatty(STDOUT_FILENO) != 0 && (!underMPI || env["CLADMOP_TTY"] == "1")
    }()
    var open = false
    init(enabled: Bool) { self.enabled = enabled }
    func update(_ text: String) {
        guard enabled else { return }
        if tty { print("\r\u{1B}[K" + text, terminator: ""); open = true } else { print(text) }
        fflush(stdout)
    }
    func finish() { if enabled && open { print(""); open = false } }
}
