// swift-tools-version:6.0
import PackageDescription

// Data flows one way through the targets:
//   COpenBLAS, CMPI (C shims)  ->  NN (tensors, kernels, layers, optimizers), Communication
//   -> Data (CSV, featurizers, text encoder, feature store) -> Model (CLaDMoP) -> Training -> cladmop (CLI)
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "cladmop",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cladmop", targets: ["cladmop"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "NN", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: optimize),
        .target(name: "Communication", dependencies: ["CMPI"], swiftSettings: optimize),
        .target(name: "TextEncoder", dependencies: ["NN"], swiftSettings: optimize),
        .target(name: "Config", dependencies: ["NN", .product(name: "Yams", package: "Yams")], swiftSettings: optimize),
        .target(name: "TrialData", dependencies: ["NN", "TextEncoder", "Communication"], swiftSettings: optimize),
        .target(name: "Model", dependencies: ["NN"], swiftSettings: optimize),
        .target(name: "Training", dependencies: ["NN", "Communication", "Config", "TrialData", "Model"], swiftSettings: optimize),
        .target(name: "TestSupport", dependencies: ["NN"], path: "Tests/Support"),
        .executableTarget(name: "MPISelfTest", dependencies: ["Communication", "NN"], swiftSettings: optimize),
        .executableTarget(name: "cladmop",
                          dependencies: ["NN", "Communication", "TextEncoder", "TrialData", "Config", "Model", "Training",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: optimize),
        .testTarget(name: "NNTests", dependencies: ["NN", "TestSupport"]),
        .testTarget(name: "CommunicationTests", dependencies: ["Communication", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["NN", "Training", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["NN", "TestSupport"]),
        .testTarget(name: "TextEncoderTests", dependencies: ["TextEncoder", "NN"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "NN", "TestSupport"]),
        .testTarget(name: "TrialDataTests", dependencies: ["TrialData", "NN", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
