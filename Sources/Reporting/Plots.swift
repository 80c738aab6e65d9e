import Foundation
import Support

// SVG plots for reports: ticks at round values (multiples of 1, 2 or 5 x 10^k; on log axes powers of 10 or
// 1-2-5), axes over the data's range (or the quantity's fixed range, e.g. 0 to 1 for ROC and PR curves),
// the legend outside the plot area, and a PNG copy when rsvg-convert is installed.

// MARK: ticks

/// The finest step m x 10^k (m in 1, 2, 5) that puts at most `maxTicks` multiples of itself in [lo, hi];
/// with `integer` (steps, epochs), at least 1.
public func niceStep(_ lo: Double, _ hi: Double, maxTicks: Int = 6, integer: Bool = false) -> Double {
    // Plots draw logged values: a degenerate or non-finite range gets a unit step rather than stopping the run.
    guard hi > lo, maxTicks >= 2, lo.isFinite, hi.isFinite, (hi - lo).isFinite else { return 1 }
    var e = floor(log10((hi - lo) / Double(maxTicks))) - 1
    if integer { e = max(e, 0) }
    while true {
        for m in [1.0, 2.0, 5.0] {
            let s = m * pow(10, e)
            if let ticks = tickIndices(lo, hi, s), ticks.count <= maxTicks { return s }
        }
        e += 1
    }
}

/// k such that k x step lies in [lo, hi] (with a relative tolerance, so that 0.3 counts in [0, 0.3]); nil when there
/// are more than 10,000 of them or k leaves ±10^15 (a logged value near the Double's limit: no trap converting it).
func tickIndices(_ lo: Double, _ hi: Double, _ step: Double) -> [Int]? {
    let first = (lo / step - 1e-9).rounded(.up), last = (hi / step + 1e-9).rounded(.down)
    guard first.isFinite, last.isFinite, abs(first) < 1e15, abs(last) < 1e15, last - first < 10_000 else { return nil }
    return first <= last ? Array(Int(first)...Int(last)) : []
}

/// k x step without the binary noise of the product (3 x 0.1 is 0.3, not 0.30000000000000004).
func tickValue(_ k: Int, _ step: Double) -> Double {
    let e = floor(log10(step) + 1e-9)
    return e < 0 ? Double(k) * (step * pow(10, -e)).rounded() / pow(10, -e) : Double(k) * step
}

/// Round tick values in [lo, hi]: every multiple of `niceStep(lo, hi, maxTicks)`. E.g. 0.337...2.9 gives
/// 0.5, 1, 1.5, 2, 2.5; 0...158 gives 0, 50, 100, 150; 0...1 gives 0, 0.2, ..., 1.
public func niceTicks(_ lo: Double, _ hi: Double, maxTicks: Int = 6, integer: Bool = false) -> [Double] {
    guard lo.isFinite, hi.isFinite else { return [] }
    guard hi > lo else { return [lo] }
    let step = niceStep(lo, hi, maxTicks: maxTicks, integer: integer)
    return (tickIndices(lo, hi, step) ?? []).map { tickValue($0, step) }
}

/// Ticks of a log axis over [lo, hi] (data values, both > 0): 1, 2, 5 x 10^k when at most `maxTicks` of them
/// fit, else powers of 10 (every second, third, ... decade when there are too many); within less than a
/// 1-2-5 interval, round linear ticks.
public func logTicks(_ lo: Double, _ hi: Double, maxTicks: Int = 8) -> [Double] {
    guard lo > 0, hi > lo, lo.isFinite, hi.isFinite else { return lo > 0 && lo.isFinite ? [lo] : [] }
    let k0 = Int(floor(log10(lo))), k1 = Int(ceil(log10(hi)))
    func inside(_ v: Double) -> Bool { v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) }
    func power(_ k: Int) -> Double { k < 0 ? 1 / pow(10, Double(-k)) : pow(10, Double(k)) }
    let oneTwoFive = (k0...k1).flatMap { k in [1.0, 2, 5].map { $0 * power(k) } }.filter(inside)
    if oneTwoFive.count >= 2 && oneTwoFive.count <= maxTicks { return oneTwoFive }
    let powers = (k0...k1).map(power).filter(inside)
    if powers.count >= 2 {
        let every = (powers.count + maxTicks - 1) / maxTicks
        return powers.enumerated().filter { $0.offset % every == 0 }.map(\.element)
    }
    return niceTicks(lo, hi, maxTicks: maxTicks)
}

/// Decimals that show every multiple of `step` exactly (0.5 -> 1, 0.05 -> 2, 50 -> 0).
func decimals(forStep step: Double) -> Int { max(0, -Int(floor(log10(step) + 1e-9))) }

/// Tick labels: the same number of decimals for all (those of the finest difference), no "-0".
public func tickLabels(_ ticks: [Double], log: Bool = false) -> [String] {
    if log {
        return ticks.map { v in
            let d = max(0, -Int(floor(log10(v) + 1e-9)))
            return String(format: "%.\(d)f", v)
        }
    }
    let step = zip(ticks.dropFirst(), ticks).map { $0 - $1 }.min() ?? (ticks.first.map { $0 == 0 ? 1 : abs($0) } ?? 1)
    let d = decimals(forStep: step)
    return ticks.map { v in
        let s = String(format: "%.\(d)f", v)
        return Double(s) == 0 ? String(format: "%.\(d)f", 0.0) : s
    }
}

/// The shown range of an axis over data in [lo, hi]: padded by `pad` x the span on both sides, kept inside
/// `bounds` (the values the quantity can take, e.g. 0...1 for an accuracy), then each end moved out to the
/// nearest round tick when that tick is within 10 % of the span (so an axis over steps 1...158 starts at 0,
/// and one over losses 0.34...2.9 starts at 0 but ends at 3, not 5).
public func axisDomain(_ lo: Double, _ hi: Double, pad: Double = 0, bounds: ClosedRange<Double>? = nil, maxTicks: Int = 6,
                       integer: Bool = false) -> ClosedRange<Double> {
    var lo = lo, hi = hi
    if !(hi - lo > 1e-12 * max(abs(lo), abs(hi), 1)) {
        let half = integer ? 1 : lo == 0 ? 0.5 : abs(lo) * 0.1
        lo -= half; hi += half
    }
    let span = hi - lo
    lo -= pad * span; hi += pad * span
    if let b = bounds { lo = max(lo, b.lowerBound); hi = min(hi, b.upperBound) }
    let step = niceStep(lo, hi, maxTicks: maxTicks, integer: integer)
    let down = floor(lo / step + 1e-9) * step, up = ceil(hi / step - 1e-9) * step
    if lo - down <= 0.1 * span && (bounds.map { down >= $0.lowerBound } ?? true) { lo = down }
    if up - hi <= 0.1 * span && (bounds.map { up <= $0.upperBound } ?? true) { hi = up }
    return lo...hi
}

// MARK: SVG

/// One line of a plot. Reference lines (chance) are dashed and grey.
public struct PlotSeries {
    public var label: String
    public var points: [(Double, Double)]
    public var reference: Bool
    public init(_ label: String, _ points: [(Double, Double)], reference: Bool = false) {
        self.label = label; self.points = points; self.reference = reference
    }
}

/// `text` with &, < and > escaped for XML.
func xmlEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

/// The opening of an SVG plot: white background, title, x and y axes along the plot area's left and bottom.
/// The title is centred at `titleX` (default: the middle of the picture).
public func svgFrame(width w: Double, height h: Double, left: Double, right: Double, top: Double, bottom: Double, title: String,
                     titleX: Double? = nil) -> String {
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += "<text x=\"\(titleX ?? w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">\(xmlEscaped(title))</text>\n"
    s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    return s + "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
}

/// A line plot as SVG: each series is (label, [(x, y)]).
public func svgLinePlot(title: String, xLabel: String, yLabel: String, series: [(String, [(Double, Double)])],
                        logX: Bool = false) -> String {
    svgLinePlot(title: title, xLabel: xLabel, yLabel: yLabel, series: series.map { PlotSeries($0.0, $0.1) }, logX: logX)
}

/// A line plot as SVG. Axes: `xRange`/`yRange` fix the shown range (e.g. 0...1 for ROC curves); otherwise the
/// data's range (y padded by 4 %), kept inside `xBounds`/`yBounds` (what the quantity can take) and extended to
/// a round tick when one is near. `square` makes the plot area square (ROC and PR curves). The legend is to the
/// right of the plot area, where it cannot cover data.
public func svgLinePlot(title: String, xLabel: String, yLabel: String, series: [PlotSeries], logX: Bool = false,
                        xRange: ClosedRange<Double>? = nil, yRange: ClosedRange<Double>? = nil,
                        xBounds: ClosedRange<Double>? = nil, yBounds: ClosedRange<Double>? = nil, square: Bool = false) -> String {
    let plotW = square ? 360.0 : 520.0, plotH = square ? 360.0 : 300.0
    let left = 72.0, top = 44.0, bottom = 56.0
    let legendW = 44.0 + 7.6 * Double(series.map(\.label.count).max() ?? 0)
    let right = 16.0 + legendW
    let w = left + plotW + right, h = top + plotH + bottom
    func usable(_ p: (Double, Double)) -> Bool { p.0.isFinite && p.1.isFinite && (!logX || p.0 > 0) }
    // Reference lines span whatever range the data needs; they do not set it.
    let data = series.filter { !$0.reference }.flatMap(\.points).filter(usable)
    let all = data.isEmpty ? series.flatMap(\.points).filter(usable) : data
    func tx(_ x: Double) -> Double { logX ? log10(x) : x }

    let xDomain: ClosedRange<Double>, xTicks: [Double]
    if let r = xRange {
        xDomain = logX ? log10(r.lowerBound)...log10(r.upperBound) : r
        xTicks = logX ? logTicks(r.lowerBound, r.upperBound) : niceTicks(r.lowerBound, r.upperBound)
    } else if logX {
        let lo = all.map(\.0).min() ?? 1, hi = all.map(\.0).max() ?? 10
        let d = hi > lo ? log10(lo)...log10(hi) : (log10(lo) - 0.5)...(log10(lo) + 0.5)
        xDomain = d
        xTicks = logTicks(pow(10, d.lowerBound), pow(10, d.upperBound))
    } else {
        // Steps and epochs: whole-number ticks.
        let integer = !all.isEmpty && all.allSatisfy { $0.0 == $0.0.rounded() }
        xDomain = axisDomain(all.map(\.0).min() ?? 0, all.map(\.0).max() ?? 1, bounds: xBounds, integer: integer)
        xTicks = niceTicks(xDomain.lowerBound, xDomain.upperBound, integer: integer)
    }
    let yDomain = yRange ?? axisDomain(all.map(\.1).min() ?? 0, all.map(\.1).max() ?? 1, pad: 0.04, bounds: yBounds)
    let yTicks = niceTicks(yDomain.lowerBound, yDomain.upperBound)

    func px(_ x: Double) -> Double { left + (tx(x) - xDomain.lowerBound) / (xDomain.upperBound - xDomain.lowerBound) * plotW }
    func py(_ y: Double) -> Double { top + plotH - (y - yDomain.lowerBound) / (yDomain.upperBound - yDomain.lowerBound) * plotH }
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    var s = svgFrame(width: w, height: h, left: left, right: right, top: top, bottom: bottom, title: title, titleX: left + plotW / 2)
    // Grid and ticks.
    for (v, label) in zip(yTicks, tickLabels(yTicks)) {
        let y = py(v)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", left, y, left + plotW, y)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left - 5, y, left, y)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%@</text>\n", left - 8, y + 4.5, label)
    }
    for (v, label) in zip(xTicks, tickLabels(xTicks, log: logX)) {
        let x = px(v)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x, top, x, top + plotH)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, top + plotH, x, top + plotH + 5)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%@</text>\n", x, top + plotH + 20, label)
    }
    // Axes over the grid.
    s += "<line x1=\"\(left)\" y1=\"\(top + plotH)\" x2=\"\(left + plotW)\" y2=\"\(top + plotH)\" stroke=\"black\"/>\n"
    s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(top + plotH)\" stroke=\"black\"/>\n"
    s += "<text x=\"\(left + plotW / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\" font-size=\"14\">\(xmlEscaped(xLabel))</text>\n"
    let yMid = top + plotH / 2
    s += "<text x=\"18\" y=\"\(yMid)\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 18 \(yMid))\">\(xmlEscaped(yLabel))</text>\n"
    // Lines, clipped to the plot area (and a margin, for the markers of points on its edges).
    s += "<clipPath id=\"plot-area\"><rect x=\"\(left - 5)\" y=\"\(top - 5)\" width=\"\(plotW + 10)\" height=\"\(plotH + 10)\"/></clipPath>\n<g clip-path=\"url(#plot-area)\">\n"
    var k = 0
    var legend: [(String, String, Bool)] = []
    for line in series {
        let c = line.reference ? "#7f7f7f" : colors[k % colors.count]
        if !line.reference { k += 1 }
        legend.append((line.label, c, line.reference))
        let valid = line.points.filter(usable)
        let path = valid.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
        s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"\(line.reference ? 1.5 : 2.2)\"\(line.reference ? " stroke-dasharray=\"6 4\"" : "") points=\"\(path)\"/>\n"
        if !line.reference && valid.count <= 40 {
            for p in valid { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"\(c)\"/>\n", px(p.0), py(p.1)) }
        }
    }
    s += "</g>\n"
    // Legend: right of the plot area.
    let lx = left + plotW + 16
    for (i, (label, c, reference)) in legend.enumerated() {
        let y = top + 10 + 22 * Double(i)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"\(c)\" stroke-width=\"%@\"%@/>\n", lx, y, lx + 26, y,
                    reference ? "1.5" : "2.2", reference ? " stroke-dasharray=\"6 4\"" : "")
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\">%@</text>\n", lx + 34, y + 4.5, xmlEscaped(label))
    }
    return s + "</svg>\n"
}

// MARK: files

/// Writes `svg` to `path` and, when `rsvg-convert` (Debian: librsvg2-bin) is on PATH, a PNG beside it (`.png`, at
/// twice the size for sharp text), for sites that refuse SVG: the two as one (`OutputGroup`), or as part of `group`,
/// which the caller commits. rsvg-convert renders the SVG's temporary file to its standard output and the PNG is
/// written like every output (a full disk is an error, the earlier SVG and PNG kept). Without rsvg-convert, or when it
/// cannot render, one line says so and only the SVG is written; a PNG of an earlier run is removed so that it never
/// shows another plot. Returns the file name that a report should embed: the PNG when there is one, else the SVG.
@discardableResult
public func writePlot(_ path: String, group: OutputGroup? = nil, _ svg: String) throws -> String {
    let url = URL(fileURLWithPath: path)
    let png = url.deletingPathExtension().appendingPathExtension("png").path
    try refuseNonRegularOutput(png, reportingAs: png)     // renamed over (a link is replaced, not its target), or removed
    let outputs = group ?? OutputGroup()
    let written = try outputs.write(path) { try $0.write(contentsOf: Data(svg.utf8)) }
    let name: String
    if let bytes = renderPNG(svgPath: written, naming: path) {
        // At the path itself (no link is followed): a PNG named through a link replaces the link, as the checks above
        // and evaluate's and the sweep's assume; the file it pointed to stays as it was. An input there is refused.
        try outputs.write(png, followingLinks: false) { try $0.write(contentsOf: bytes) }
        name = URL(fileURLWithPath: png).lastPathComponent
    } else {
        try outputs.removeAtCommit(png)
        name = url.lastPathComponent
    }
    if group == nil { try outputs.commit() }
    return name
}

/// `text` (a path) as one markdown code span: its line breaks written as `\n` and `\r`, fenced by one backtick more
/// than its longest run of them (a path may hold both; either would have broken the report's text).
public func markdownCode(_ text: String) -> String {
    let flat = text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    var longest = 0, run = 0
    for c in flat { if c == "`" { run += 1; longest = max(longest, run) } else { run = 0 } }
    let fence = String(repeating: "`", count: longest + 1), pad = flat.hasPrefix("`") || flat.hasSuffix("`") || (flat.hasPrefix(" ") && flat.hasSuffix(" ")) ? " " : ""
    return fence + pad + flat + pad + fence
}

/// The report's image line: the PNG (a link to the SVG) when `embedded` is one, else the SVG.
public func markdownImage(alt: String, embedded: String) -> String {
    guard embedded.hasSuffix(".png") else { return "![\(alt)](\(embedded))" }
    return "[![\(alt)](\(embedded))](\(embedded.dropLast(4)).svg)"
}

nonisolated(unsafe) var rsvgNoticeShown = false

/// The SVG file at `svgPath` rendered as PNG by rsvg-convert (to its standard output; the path made absolute, so that
/// one starting with "-" is not read as an option; no standard input, so that it never waits on a terminal); nil, and a
/// line on stderr naming the plot as `naming` (the SVG's own path; `svgPath` may be its temporary file), when it is
/// missing or fails.
func renderPNG(svgPath: String, naming: String) -> Data? {
    func notice(_ line: String) {
        standardErrorWrite(Data((line + "\n").utf8))
    }
    let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    guard let tool = dirs.map({ $0 + "/rsvg-convert" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        if !rsvgNoticeShown {
            rsvgNoticeShown = true
            notice("note: rsvg-convert not found (Debian: apt-get install librsvg2-bin, or Launch/setup); plots are written as SVG only")
        }
        return nil
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = ["--format", "png", "--zoom", "2", "--background-color", "white", URL(fileURLWithPath: svgPath).path]
    let output = Pipe(), errors = Pipe()
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = errors
    do { try process.run() } catch {
        notice("note: cannot run \(tool) (\(error)); \(naming) written as SVG only")
        return nil
    }
    // Both pipes at once (either may fill while the other is read).
    final class Box: @unchecked Sendable { var data = Data() }
    let messages = Box(), done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { messages.data = errors.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    let bytes = output.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    process.waitUntilExit()
    guard process.terminationStatus == 0, !bytes.isEmpty else {
        let why = String(decoding: messages.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        notice("note: rsvg-convert failed on \(naming) (status \(process.terminationStatus)\(why.isEmpty ? "" : ": " + why)); SVG only")
        return nil
    }
    return bytes
}
