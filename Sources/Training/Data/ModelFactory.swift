import Config
import Foundation
import Model
import NN
import TrialData

extension ModelConfig {
    /// The architecture of `spec` on data whose sizes (sentence width, vocabulary, tables) are given.
    public init(_ spec: ModelSpec, loss: LossSpec, encoderDim: Int, molVocab: Int, maxMolecules: Int, icdTableSizes: [Int],
                categoryCount: Int) {
        self.init(dim: spec.dim, heads: spec.heads, molLayers: spec.molLayers, disLayers: spec.disLayers,
                  groupingLayers: spec.groupingLayers, selfLayers: spec.selfLayers, centroids: spec.centroids,
                  encoderDim: encoderDim, molVocab: molVocab, maxMolecules: maxMolecules, icdTableSizes: icdTableSizes,
                  categoryCount: categoryCount, learnableScale: loss.logitScale == .learnable,
                  initialLogScale: Float(loss.initialLogScale))
    }

    /// The architecture of `spec` on the inputs of `builder`, validated as a checkpoint's is when read back (a model
    /// whose sizes its own checkpoints could not be loaded with is refused before it trains).
    public init(_ spec: ModelSpec, loss: LossSpec, builder: BatchBuilder) throws {
        self.init(spec, loss: loss, encoderDim: builder.store.dim, molVocab: builder.space.smilesVocabulary.count,
                  maxMolecules: builder.space.maxMolecules, icdTableSizes: builder.tableSizes, categoryCount: builder.categoryCount)
        try validate(origin: "the model built on \(builder.store.path) (its sentence vectors, SMILES and ICD-10 tables)")
    }
}

extension FeatureSpace {
    /// The input space of `data` over `trials` (the SMILES vocabulary is theirs): ICD tables of depths
    /// 1...model.icd_depth (a tree that does not reach it is refused by `BatchBuilder`).
    public init(trials: [StoredTrial], data: DataSpec, model: ModelSpec) {
        self.init(trials: trials, icdDepth: model.icdDepth, maxSentences: data.maxSentences,
                  maxMolTokens: data.maxMolTokens, maxMolecules: data.maxMolecules, maxCodes: data.maxCodes)
    }
}

extension OptimizerKind {
    public init(_ name: OptimizerSpec.Name) {
        switch name {
        case .adam: self = .adam
        case .adamw: self = .adamw
        case .sgd: self = .sgd
        }
    }
}
