import Communication
import Foundation
import NN
import Support

/// The ICD-10-CM tree from `icd10cm_2025_hierarchy.tsv` (`id<TAB>parent<TAB>depth<TAB>description`;
/// depth 1 chapter, 2 block, 3 category, 4+ subcategories). Each node has an index within its depth,
/// which is its row in that depth's embedding table.
public final class ICD10Hierarchy {
    public let path: String
    public private(set) var parent: [String: String] = [:]
    public private(set) var depth: [String: Int] = [:]
    /// nodeIndex[d - 1][id] = row of node `id` in the depth-d table.
    public private(set) var nodeIndex: [[String: Int32]] = []
    public var maxDepth: Int { nodeIndex.count }
    public var nodesPerDepth: [Int] { nodeIndex.map(\.count) }
    /// Checksum of the tree as the model sees it: every node's id, parent and depth in file order (a node's row in
    /// its depth's table is its order there); descriptions are left out.
    public private(set) var checksum = ""

    /// Reads the hierarchy: LF, CR LF or CR line endings and a byte-order mark are accepted; a FIFO, directory
    /// or device is refused before it is opened. Every id is listed once, every node below depth 1 has a
    /// listed parent one level up and depth-1 nodes have an unlisted root (so walking up from any node ends).
    public init(path: String) throws {
        self.path = path
        try requireConfiguredPath(path, key: "data.icd_hierarchy")
        let text = try readTextLines(path, what: "ICD-10 hierarchy (id<TAB>parent<TAB>depth<TAB>description)")
        var order: [(String, Int)] = []
        var firstLine: [String: Int] = [:]
        for (i, line) in text.lines.enumerated() {
            let lineNumber = i + 1
            if lineNumber == 1 || line.isEmpty { continue }
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard cols.count >= 3, let d = Int(cols[2]), d >= 1, d <= 16 else {
                throw InputError(file: path, line: lineNumber, "expected id<TAB>parent<TAB>depth<TAB>description with depth 1-16")
            }
            let id = String(cols[0])
            guard !id.isEmpty else { throw InputError(file: path, line: lineNumber, "empty id (expected id<TAB>parent<TAB>depth<TAB>description)") }
            if let previous = firstLine[id] {
                throw InputError(file: path, line: lineNumber, "id \(id) is already listed on line \(previous); each node is listed once")
            }
            firstLine[id] = lineNumber
            parent[id] = String(cols[1]); depth[id] = d
            order.append((id, d))
        }
        for (id, d) in order {
            let p = parent[id]!
            if d == 1 {
                guard depth[p] == nil else {
                    throw InputError(file: path, line: firstLine[id]!, "\(id) is at depth 1 but its parent \"\(p.prefix(60))\" is a listed node; expected the root (e.g. \"root\")")
                }
            } else if depth[p] != d - 1 {
                let found = depth[p].map { "is at depth \($0)" } ?? "is not listed"
                throw InputError(file: path, line: firstLine[id]!, "parent \"\(p.prefix(60))\" of \(id) (depth \(d)) \(found); expected a listed node at depth \(d - 1)")
            }
        }
        let deepest = order.map(\.1).max() ?? 0
        nodeIndex = Array(repeating: [:], count: deepest)
        for (id, d) in order { nodeIndex[d - 1][id] = Int32(nodeIndex[d - 1].count) }
        let tree = order.map { "\($0.0)\t\(parent[$0.0]!)\t\($0.1)\n" }.joined()
        checksum = checksumHex(tree)
    }

    /// Reads the hierarchy on every rank (each node may hold its own copy of `path`) and ends the job when the ranks'
    /// trees differ: another order or other nodes give other table rows, or tables of other sizes (a collective of
    /// mismatched sizes), on some ranks.
    public convenience init(path: String, comm: Communicator) throws {
        try self.init(path: path)
        try requireAgreement([("data.icd_hierarchy = \(path) (its nodes)", "checksum \(checksum), \(nodesPerDepth) nodes per depth")],
                             comm: comm, what: "ICD-10 hierarchies (data.icd_hierarchy must be the same file on every node)")
    }

    /// The code itself if known, else its longest known prefix (an unseen leaf maps to its known
    /// ancestors: "C34.901" -> "C34.90" -> "C34.9" -> "C34"), else nil. Case-insensitive; a code written without
    /// its dot, as claims data and CMS's files write them ("E119"), is read as the dotted code ("E11.9"), not
    /// cut to its category, unless the hierarchy lists it as written.
    public func resolve(_ code: String) -> String? {
        var c = code.uppercased()
        // As written first: a hierarchy may list its codes without dots (CMS's order files).
        if let d = depth[c], d >= 3 { return c }
        if c.count > 3 && !c.contains(".") { c.insert(".", at: c.index(c.startIndex, offsetBy: 3)) }
        while !c.isEmpty {
            if depth[c] != nil && depth[c]! >= 3 { return c }
            c.removeLast()
            if c.hasSuffix(".") { c.removeLast() }
        }
        return nil
    }

    /// Row of each ancestor (the code included) per depth, -1 below the code's depth: (maxDepth).
    public func ancestorRows(_ code: String, maxDepth limit: Int) -> [Int32] {
        var rows = [Int32](repeating: -1, count: limit)
        var node: String? = code
        while let n = node, let d = depth[n] {
            if d <= limit { rows[d - 1] = nodeIndex[d - 1][n]! }
            node = parent[n]
        }
        return rows
    }

    /// The depth-3 ancestor (3-character category), e.g. "C34" for "C34.90".
    public func category(_ code: String) -> String? {
        var node: String? = code
        while let n = node, let d = depth[n] {
            if d == 3 { return n }
            node = parent[n]
        }
        return nil
    }
}
