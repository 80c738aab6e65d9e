import Support
import NN
import Training
import XCTest

/// Dealing a global batch to ranks: every row exactly once, `shard`'s row counts, and even compute.
final class ShardingTests: XCTestCase {
    func testShardsCoverTheBatchOnce() {
        for (count, size) in [(10, 3), (7, 7), (128, 2), (5, 1)] {
            let slots = (0..<size).flatMap { Array(shard(count, rank: $0, of: size)) }
            XCTAssertEqual(slots, Array(0..<count))
        }
    }

    func testBalancedOrderIsAPermutationWithEvenLoads() {
        var rng = RNG(seed: 11)
        for (count, size) in [(128, 2), (30, 3), (9, 4), (64, 1)] {
            let costs = (0..<count).map { _ in 1 + 9 * rng.uniform() }
            let order = balancedOrder(costs: costs, ranks: size)
            XCTAssertEqual(order.sorted(), Array(0..<count), "every row once")
            let loads = (0..<size).map { r in shard(count, rank: r, of: size).reduce(0.0) { $0 + costs[order[$1]] } }
            // Greedy LPT with equal row counts: the spread of the loads is at most the largest single cost.
            XCTAssertLessThanOrEqual(loads.max()! - loads.min()!, costs.max()!, "loads \(loads)")
            for r in 0..<size {
                let rows = shard(count, rank: r, of: size).map { order[$0] }
                XCTAssertEqual(rows, rows.sorted(), "ascending within a rank")
            }
        }
        XCTAssertEqual(balancedOrder(costs: [3, 1, 2], ranks: 1), [0, 1, 2], "one rank: the identity")
    }

    func testBalancedOrderSplitsLongRowsThatThePositionalDealPutsTogether() {
        // By position rank 0 would get all four long rows (cost 40 against 4); dealt by cost, 22 against 22.
        let costs: [Double] = [10, 10, 10, 10, 1, 1, 1, 1]
        let order = balancedOrder(costs: costs, ranks: 2)
        let loads = (0..<2).map { r in shard(8, rank: r, of: 2).reduce(0.0) { $0 + costs[order[$1]] } }
        XCTAssertEqual(loads, [22, 22])
        XCTAssertEqual(order, [0, 2, 4, 6, 1, 3, 5, 7])
    }
}
