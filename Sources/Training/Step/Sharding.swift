import Support

/// Rows [rank B / W, (rank + 1) B / W) of B rows dealt to W ranks: every rank's slot in the gathered batch.
public func shard(_ count: Int, rank: Int, of size: Int) -> Range<Int> {
    (rank * count / size)..<((rank + 1) * count / size)
}

/// A global batch of B rows dealt to W ranks needs B >= W: every rank embeds at least one row.
public func requireRowPerRank(globalBatch: Int, worldSize: Int) throws {
    guard globalBatch >= worldSize else {
        throw InputError("train.global_batch = \(globalBatch) is smaller than the world size \(worldSize) (every rank needs at least one row)")
    }
}

/// Deals the B rows of a global batch to W ranks so that their compute is even: each rank gets as many rows
/// as `shard` gives it, and the rows go, most expensive first (ties by position), to the rank with the least
/// cost so far that still has room (greedy longest-processing-time). Returns the rows in gathered order:
/// rank r embeds rows `order[shard(B, rank: r, of: W)]`, ascending within the rank. The InfoNCE loss over
/// the gathered batch and its gradient do not depend on the order of its pairs, so any W trains on the same
/// global batch as W = 1 (for which the order is the identity).
public func balancedOrder(costs: [Double], ranks size: Int) -> [Int] {
    let count = costs.count
    if size <= 1 { return Array(0..<count) }
    let capacity = (0..<size).map { shard(count, rank: $0, of: size).count }
    var load = [Double](repeating: 0, count: size), rows = [[Int]](repeating: [], count: size)
    for row in (0..<count).sorted(by: { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }) {
        var best = -1
        for r in 0..<size where rows[r].count < capacity[r] && (best < 0 || load[r] < load[best]) { best = r }
        rows[best].append(row); load[best] += costs[row]
    }
    return rows.flatMap { $0.sorted() }
}
