import Foundation
import Reporting
import Support
import XCTest

/// Plot axes: ticks at round values (1, 2, 5 x 10^k), ranges that start where data and quantity allow, log
/// ticks, labels; the SVG of ROC/PR curves and the PNG copy made with rsvg-convert (when installed).
final class PlotTests: XCTestCase {
    func assertTicks(_ got: [Double], _ want: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, "\(got) vs \(want)", file: file, line: line)
        for (g, w) in zip(got, want) { XCTAssertEqual(g, w, accuracy: 1e-12 * max(1, abs(w)), "\(got) vs \(want)", file: file, line: line) }
    }

    func testTicksAreRoundValues() {
        // The cases: a loss axis labelled 0.337, 1.53, 2.73 and a step axis labelled 81.75, 158.5 before.
        assertTicks(niceTicks(0.337, 2.9), [0.5, 1, 1.5, 2, 2.5])
        assertTicks(niceTicks(0, 158), [0, 50, 100, 150])
        assertTicks(niceTicks(5, 158), [50, 100, 150])
        assertTicks(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1])
        assertTicks(niceTicks(-0.05, 1.05), [0, 0.2, 0.4, 0.6, 0.8, 1])
        assertTicks(niceTicks(0, 0.3), [0, 0.1, 0.2, 0.3])
        assertTicks(niceTicks(1e-5, 4.2e-5), [1e-5, 2e-5, 3e-5, 4e-5])
        assertTicks(niceTicks(-3.2, 7.9), [-2, 0, 2, 4, 6])
        assertTicks(niceTicks(1, 3, integer: true), [1, 2, 3])
        assertTicks(niceTicks(0.6, 3.4, integer: true), [1, 2, 3])
        XCTAssertEqual(niceTicks(0, 1).map { $0 * 10 }, [0, 2, 4, 6, 8, 10], "0.6 is 0.6, not 0.6000000000000001")
        // Every step is 1, 2 or 5 x 10^k and there are at most maxTicks ticks, for ranges of all sizes (a fixed
        // seed: the same 2000 ranges on every run). Ticks lie in the range up to the rounding of a Double of that
        // magnitude (a range 2e-4 wide at 6.6e8 had a tick one ulp, 1.2e-7, below its start).
        var rng = SplitMix64(seed: 20261202)
        for _ in 0..<2000 {
            let lo = Double.random(in: -1000...1000, using: &rng) * pow(10, Double(Int.random(in: -6...6, using: &rng)))
            let hi = lo + Double.random(in: 1e-3...1000, using: &rng) * pow(10, Double(Int.random(in: -6...3, using: &rng)))
            let step = niceStep(lo, hi, maxTicks: 6)
            let mantissa = step / pow(10, floor(log10(step) + 1e-9))
            XCTAssertTrue([1.0, 2, 5].contains { abs($0 - mantissa) < 1e-6 }, "\(lo)...\(hi): step \(step)")
            let t = niceTicks(lo, hi)
            XCTAssertTrue(t.count >= 2 && t.count <= 6, "\(lo)...\(hi): \(t)")
            let slack = max(1e-8 * (hi - lo), 4 * max(abs(lo), abs(hi)).ulp)
            XCTAssertTrue(t.allSatisfy { $0 >= lo - slack && $0 <= hi + slack }, "\(lo)...\(hi): \(t)")
        }
    }

    func testLabelsShowEveryTickExactly() {
        XCTAssertEqual(tickLabels([0, 0.5, 1, 1.5]), ["0.0", "0.5", "1.0", "1.5"])
        XCTAssertEqual(tickLabels([0, 50, 100, 150]), ["0", "50", "100", "150"])
        XCTAssertEqual(tickLabels(niceTicks(0, 1)), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        XCTAssertEqual(tickLabels([-0.05, 0, 0.05]), ["-0.05", "0.00", "0.05"])
        XCTAssertEqual(tickLabels([0.001, 0.01, 0.1, 1, 10], log: true), ["0.001", "0.01", "0.1", "1", "10"])
    }

    func testLogTicksArePowersOfTenOrOneTwoFive() {
        assertTicks(logTicks(16, 1024), [20, 50, 100, 200, 500, 1000])
        assertTicks(logTicks(1, 1e6), [1, 10, 100, 1e3, 1e4, 1e5, 1e6])
        assertTicks(logTicks(1e-5, 0.1), [1e-5, 1e-4, 1e-3, 1e-2, 0.1])
        assertTicks(logTicks(1, 1e20), [1, 1e3, 1e6, 1e9, 1e12, 1e15, 1e18])
        assertTicks(logTicks(3, 4), niceTicks(3, 4, maxTicks: 8))
    }

    func testAxesStartWhereDataAndQuantityAllow() {
        // Steps 1...158: from 0 (a round value within 10 % of the span) to 158 (200 would waste a quarter).
        XCTAssertEqual(axisDomain(1, 158, integer: true), 0...158)
        // Losses 0.337...2.9 with 4 % padding: from 0, not from a negative padded value.
        let loss = axisDomain(0.337, 2.9, pad: 0.04)
        XCTAssertEqual(loss.lowerBound, 0)
        XCTAssertGreaterThan(loss.upperBound, 2.9)
        // An accuracy near 1 is not padded above 1, and not down to 0 either.
        let acc = axisDomain(0.62, 1, pad: 0.04, bounds: 0...1)
        XCTAssertEqual(acc.upperBound, 1)
        XCTAssertGreaterThan(acc.lowerBound, 0.5)
        XCTAssertLessThan(acc.lowerBound, 0.62)
        // One value: a range around it.
        XCTAssertEqual(axisDomain(1, 1, integer: true), 0...2)
    }

    func testValuesNearTheDoublesLimitPlotWithoutTrapping() {
        // A hand-edited or damaged metrics.jsonl read back by a resumed run: a loss of 1.7e308 beside losses near 2. The
        // padded span overflows, and the tick code had converted -6.8e306 to an Int (a trap at the end of pretraining).
        let svg = svgLinePlot(title: "loss", xLabel: "step", yLabel: "loss",
                              series: [PlotSeries("train", [(1, 2.1), (2, 1.7e308), (3, 1.9)])], xBounds: 0...Double.infinity)
        XCTAssertTrue(svg.contains("<svg"), String(svg.prefix(200)))
        XCTAssertEqual(niceTicks(-1.7e308, 1.7e308), [], "a range wider than a Double holds has no ticks")
        XCTAssertFalse(niceTicks(1e20, 1e20 + 1e6).isEmpty, "a narrow range far from 0 still gets round ticks")
    }

    func testROCAndPRCurvesSpanZeroToOneWithChanceLines() throws {
        let dir = NSTemporaryDirectory() + "cladmop-plots-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scores = (0..<40).map { Double(($0 * 37) % 40) / 40 }, labels = (0..<40).map { $0 % 4 == 0 ? 0 : 1 }
        try writeCurves(scores: scores, labels: labels, dir: dir)
        let roc = try String(contentsOfFile: dir + "/roc.svg", encoding: .utf8), pr = try String(contentsOfFile: dir + "/pr.svg", encoding: .utf8)
        for svg in [roc, pr] {
            let labels = tickTexts(svg)
            for t in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] { XCTAssertEqual(labels.filter { $0 == t }.count, 2, "\(t) on both axes: \(labels)") }
            XCTAssertFalse(labels.contains { $0.hasPrefix("-") || $0 == "1.05" || $0 == "0.225" }, "\(labels)")
        }
        XCTAssertTrue(pr.contains("chance (positive rate 0.75)"), "PR chance line at the positive rate")
        XCTAssertTrue(roc.contains(">chance<"))
        // The PR chance line is horizontal at 0.75: y of precision 0.75 on a 0...1 axis.
        let line = try XCTUnwrap(pr.components(separatedBy: "\n").first { $0.contains("stroke-dasharray") && $0.contains("polyline") })
        let ys = line.components(separatedBy: "points=\"")[1].split(separator: "\"")[0].split(separator: " ").map { Double($0.split(separator: ",")[1])! }
        XCTAssertEqual(ys[0], ys[1])
        XCTAssertEqual(ys[0], 44 + 360 * 0.25, accuracy: 0.1)
        // The legend is right of the plot area (x > left + width), never over the curves.
        let legendX = pr.components(separatedBy: "\n").filter { $0.contains(">model<") }.compactMap { Double($0.components(separatedBy: "x=\"")[1].split(separator: "\"")[0]) }
        XCTAssertEqual(legendX.count, 1)
        XCTAssertGreaterThan(legendX[0], 72 + 360)
    }

    /// Tied scores make one diagonal ROC segment: the area under the drawn curve is the ROC-AUC of its title (a tie
    /// counts 1/2), and the PR curve has one point per distinct score. Reference: Metrics.rocAUC (rank-based).
    func testCurvesHaveOnePointPerDistinctScore() throws {
        let dir = NSTemporaryDirectory() + "cladmop-ties-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 12 trials on 4 scores, each score holding both classes.
        let scores = [0.9, 0.9, 0.9, 0.6, 0.6, 0.6, 0.6, 0.3, 0.3, 0.3, 0.1, 0.1], labels = [1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0]
        try writeCurves(scores: scores, labels: labels, dir: dir)
        func modelPoints(_ file: String) throws -> [(Double, Double)] {
            let svg = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
            let line = try XCTUnwrap(svg.components(separatedBy: "\n").first { $0.contains("<polyline") && !$0.contains("stroke-dasharray") })
            return line.components(separatedBy: "points=\"")[1].split(separator: "\"")[0].split(separator: " ").map { p in
                let xy = p.split(separator: ",").map { Double($0)! }
                return ((xy[0] - 72) / 360, 1 - (xy[1] - 44) / 360)     // back from the 360-pixel square plot area
            }
        }
        let roc = try modelPoints("roc.svg"), pr = try modelPoints("pr.svg")
        XCTAssertEqual(roc.count, 1 + 4, "the origin and one point per distinct score: \(roc)")
        XCTAssertEqual(pr.count, 4, "\(pr)")
        let area = zip(roc, roc.dropFirst()).map { a, b in (b.0 - a.0) * (a.1 + b.1) / 2 }.reduce(0, +)
        XCTAssertEqual(area, Metrics.rocAUC(scores, labels), accuracy: 2e-3, "the drawn ROC curve's area is the AUC of its title")
    }

    func testPNGBesideTheSVGOrOneNoteWithoutRsvgConvert() throws {
        let dir = NSTemporaryDirectory() + "cladmop-png-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let svg = svgLinePlot(title: "t", xLabel: "x", yLabel: "y", series: [("a", [(1, 2), (3, 4)])])
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        // Without rsvg-convert on PATH: the SVG only, and a PNG of an earlier run is removed (it would show another plot).
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/b.png"))
        setenv("PATH", dir + "/no-such-folder", 1)
        let embedded = try { defer { setenv("PATH", path, 1) }; return try writePlot(dir + "/b.svg", svg) }()
        XCTAssertEqual(embedded, "b.svg")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["b.svg"])
        // A PNG path that is a file this command read is refused, rendered or not (a review: the PNG's write had
        // skipped that check, and without rsvg-convert the file was removed), and the plot is not written.
        try Data("an input".utf8).write(to: URL(fileURLWithPath: dir + "/in.png"))
        var input = stat()
        XCTAssertEqual(stat(dir + "/in.png", &input), 0)
        FilesRead.note(input, path: dir + "/in.png")
        defer { FilesRead.forget(dir + "/in.png") }
        for searchPath in [dir + "/no-such-folder", path] {
            setenv("PATH", searchPath, 1)
            defer { setenv("PATH", path, 1) }
            XCTAssertThrowsError(try writePlot(dir + "/in.svg", svg)) {
                XCTAssertTrue("\($0)".contains("in.png: is an input this command read; refusing to overwrite it"), "\($0)")
            }
            XCTAssertEqual(try String(contentsOfFile: dir + "/in.png", encoding: .utf8), "an input")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/in.svg"), "the plot's two files appear together or not at all")
        }
        try FileManager.default.removeItem(atPath: dir + "/in.png")
        let hasRsvg = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/rsvg-convert") }
        guard hasRsvg else { throw XCTSkip("rsvg-convert is not installed (Launch/setup installs librsvg2-bin)") }
        XCTAssertEqual(try writePlot(dir + "/a.svg", svg), "a.png")
        let png = try Data(contentsOf: URL(fileURLWithPath: dir + "/a.png"))
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let width = png[16..<20].reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual(width, 2 * Int(svg.components(separatedBy: "width=\"")[1].split(separator: "\"")[0])!, "rendered at 2x")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["a.png", "a.svg", "b.svg"], "no temporary file left")
        XCTAssertEqual(markdownImage(alt: "a", embedded: "a.png"), "[![a](a.png)](a.svg)")
        XCTAssertEqual(markdownImage(alt: "a", embedded: "a.svg"), "![a](a.svg)")
        // A PNG named through a link replaces the link (its target stays), also one that leads to an input.
        try Data("kept".utf8).write(to: URL(fileURLWithPath: dir + "/target.bin"))
        var st = stat()
        XCTAssertEqual(stat(dir + "/target.bin", &st), 0)
        FilesRead.note(st, path: dir + "/target.bin")
        defer { FilesRead.forget(dir + "/target.bin") }
        try FileManager.default.createSymbolicLink(atPath: dir + "/l.png", withDestinationPath: "target.bin")
        XCTAssertEqual(try writePlot(dir + "/l.svg", svg), "l.png")
        XCTAssertEqual(try String(contentsOfFile: dir + "/target.bin", encoding: .utf8), "kept")
        XCTAssertNil(try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/l.png"), "the link is replaced by the PNG")
    }

    /// A plot in a folder whose relative path starts with "-" (a run folder `-ifoo`, a stranger's probe): rsvg-convert had
    /// read it as its option -i (export id), then waited for an SVG on the standard input (a hang at a terminal; with
    /// no input, no PNG and exit 0). The PNG is made, and no file is left beside it.
    func testPNGOfAFolderNamedLikeAnOption() throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let hasRsvg = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/rsvg-convert") }
        guard hasRsvg else { throw XCTSkip("rsvg-convert is not installed (Launch/setup installs librsvg2-bin)") }
        let dir = NSTemporaryDirectory() + "cladmop-png-dash-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/-ifoo", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        let svg = svgLinePlot(title: "t", xLabel: "x", yLabel: "y", series: [("a", [(1, 2), (3, 4)])])
        XCTAssertEqual(try writePlot("-ifoo/c.svg", svg), "c.png")
        let png = try Data(contentsOf: URL(fileURLWithPath: dir + "/-ifoo/c.png"))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/-ifoo").sorted(), ["c.png", "c.svg"])
    }

    /// A PNG that cannot be written (a file size limit that the SVG fits under and the PNG does not: EFBIG, as a full
    /// disk's ENOSPC) is an error and the earlier PNG stays (a stranger's probe: it had been a note, exit 0, with the
    /// earlier PNG deleted).
    func testAPNGThatCannotBeWrittenIsAnErrorAndKeepsTheEarlierOne() throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let hasRsvg = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/rsvg-convert") }
        guard hasRsvg else { throw XCTSkip("rsvg-convert is not installed (Launch/setup installs librsvg2-bin)") }
        let dir = NSTemporaryDirectory() + "cladmop-png-full-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let earlier = Data("an earlier plot".utf8)
        try earlier.write(to: URL(fileURLWithPath: dir + "/d.png"))
        let svg = svgLinePlot(title: "t", xLabel: "x", yLabel: "y", series: [("a", (0..<50).map { (Double($0), Double($0 * $0)) })])
        XCTAssertLessThan(svg.utf8.count, 16 << 10)
        var old = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old)
        let previousHandler = signal(SIGXFSZ, SIG_IGN)
        var limited = old
        limited.rlim_cur = 16 << 10     // the SVG fits, a PNG of the plot at twice its size does not
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limited)
        XCTAssertThrowsError(try writePlot(dir + "/d.svg", svg)) { error in
            XCTAssertTrue("\(error)".contains("d.png"), "\(error)")
        }
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old)
        signal(SIGXFSZ, previousHandler)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/d.png")), earlier)
        // The SVG and its PNG are written as one: neither, and no temporary file, is left.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["d.png"], "no temporary file left, no SVG without its PNG")
    }

    /// The texts of tick labels (text-anchor end or middle, a number).
    func tickTexts(_ svg: String) -> [String] {
        svg.components(separatedBy: "\n").filter { $0.hasPrefix("<text") }.compactMap { line -> String? in
            guard let open = line.range(of: ">"), let close = line.range(of: "</text>") else { return nil }
            let t = String(line[open.upperBound..<close.lowerBound])
            return Double(t) != nil ? t : nil
        }
    }
}

/// A seeded generator (SplitMix64) for the property checks: reproducible ranges.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
