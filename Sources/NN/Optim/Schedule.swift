import Foundation

/// Learning-rate multiplier as a function of the step (1-based: the step about to be taken).
public enum LearningRateSchedule: Sendable, Equatable {
    case constant
    /// Linear warm-up from 0 over `warmupSteps`, then cosine decay to `minRatio` at `totalSteps`.
    case warmupCosine(warmupSteps: Int, totalSteps: Int, minRatio: Float)

    public func factor(step: Int) -> Float {
        switch self {
        case .constant: return 1
        case let .warmupCosine(warm, total, minRatio):
            if warm > 0 && step <= warm { return Float(step) / Float(warm) }
            let span = max(total - warm, 1)
            let progress = min(max(Float(step - warm) / Float(span), 0), 1)
            return minRatio + (1 - minRatio) * 0.5 * (1 + cosf(.pi * progress))
        }
    }
}
