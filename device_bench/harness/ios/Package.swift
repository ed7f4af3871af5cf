// swift-tools-version:5.9
// BaS timing harness for iOS devices, run by device_bench (device_bench/ios.py):
//   xcodebuild test -scheme BasBench -destination platform=iOS,id=UDID
// The compiled model is copied to Tests/BasBenchTests/Resources/BaS.mlmodelc first.
import PackageDescription

let package = Package(
    name: "BasBench",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [.library(name: "BasBench", targets: ["BasBench"])],
    targets: [
        .target(name: "BasBench", path: "Sources/BasBench"),
        .testTarget(
            name: "BasBenchTests",
            dependencies: ["BasBench"],
            path: "Tests/BasBenchTests",
            resources: [.copy("Resources")]
        ),
    ]
)
