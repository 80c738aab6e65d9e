import Foundation

/// The opening of an SVG plot: white background, title, x and y axes along the plot area's left and bottom.
public func svgFrame(width w: Double, height h: Double, left: Double, right: Double, top: Double, bottom: Double, title: String) -> String {
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(title)</text>\n"
    s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    return s + "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
}

/// A line plot as SVG: each series is (label, [(x, y)]).
public func svgLinePlot(title: String, xLabel: String, yLabel: String, series: [(String, [(Double, Double)])],
                        logX: Bool = false) -> String {
    let w = 640.0, h = 400.0, left = 70.0, right = 20.0, top = 40.0, bottom = 50.0
    let pts = series.flatMap(\.1).filter { $0.1.isFinite && (!logX || $0.0 > 0) }
    func tx(_ x: Double) -> Double { logX ? log10(x) : x }
    let xs = pts.map { tx($0.0) }, ys = pts.map(\.1)
    var x0 = xs.min() ?? 0, x1 = xs.max() ?? 1, y0 = ys.min() ?? 0, y1 = ys.max() ?? 1
    if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
    if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
    let pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad
    func px(_ x: Double) -> Double { left + (tx(x) - x0) / (x1 - x0) * (w - left - right) }
    func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    var s = svgFrame(width: w, height: h, left: left, right: right, top: top, bottom: bottom, title: title)
    for k in 0...4 {
        let yv = y0 + (y1 - y0) * Double(k) / 4, xv = x0 + (x1 - x0) * Double(k) / 4
        let xShown = logX ? pow(10, xv) : xv
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", left - 6, py(yv) + 4, yv)
        s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.4g</text>\n", left + (xv - x0) / (x1 - x0) * (w - left - right), h - bottom + 18, xShown)
    }
    s += "<text x=\"\(w / 2)\" y=\"\(h - 10)\" text-anchor=\"middle\">\(xLabel)</text>\n"
    s += "<text x=\"16\" y=\"\(h / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(h / 2))\">\(yLabel)</text>\n"
    for (k, (label, points)) in series.enumerated() {
        let c = colors[k % colors.count]
        let valid = points.filter { $0.1.isFinite && (!logX || $0.0 > 0) }
        let path = valid.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
        s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
        for p in valid where valid.count <= 40 { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"\(c)\"/>\n", px(p.0), py(p.1)) }
        s += "<text x=\"\(w - right - 150)\" y=\"\(top + 16 * Double(k + 1))\" fill=\"\(c)\">\(label)</text>\n"
    }
    return s + "</svg>\n"
}
