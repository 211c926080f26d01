# Packaging for AWS Lambda (provided.al2023, x86_64). See docs/deploy.md.
#
#   make package         release bootstraps + the full FFmpeg layer, where infra/template.yaml expects them
#   make functions       only the bootstraps: target/lambda/<function>/bootstrap
#   make layer           only the layer: target/lambda/layer/lib (layer/build)
#   make definition      the state machine as the template deploys it: target/lambda/treemux.asl.json
#   make check           layer/check on whatever is packaged
#   make deploy          sam deploy --guided with the template (needs AWS credentials)
#   make clean-package   remove target/lambda

FUNCTIONS := analyze split-audio split-and-convert merge-video merge-audio job-failed
PROFILE ?= lambda-release
TARGET ?= x86_64-unknown-linux-gnu
LAYER_FLAGS ?=
OUT := target/lambda

.PHONY: package functions layer definition check deploy clean-package

package: functions layer definition

functions:
	@test "$$(uname -m)" = x86_64 || { echo "make functions: build on x86_64 Linux (Lambda runs x86_64 here)"; exit 1; }
	scripts/setup
	cargo build --locked -p treemux-functions --profile $(PROFILE) --target $(TARGET) $(addprefix --bin ,$(FUNCTIONS))
	@for name in $(FUNCTIONS); do \
	  mkdir -p $(OUT)/$$name && \
	  install -m 0755 target/$(TARGET)/$(PROFILE)/$$name $(OUT)/$$name/bootstrap || exit 1; \
	done
	@echo "make: bootstraps in $(OUT)/<function>/bootstrap"

layer:
	layer/build $(LAYER_FLAGS)

# statemachine/treemux.asl.json with its number placeholders unquoted: CloudFormation's
# DefinitionSubstitutions replace text, so "${SegmentConcurrency}" would stay a string.
definition:
	mkdir -p $(OUT)
	cargo run --quiet --locked -p treemux-worker --bin treemux-worker -- render-template > $(OUT)/treemux.asl.json

check:
	layer/check

deploy:
	@grep -q '^full ' $(OUT)/layer.variant 2>/dev/null || { echo "make deploy: no full layer in $(OUT)/layer; run make package first"; exit 1; }
	@test -x $(OUT)/split-and-convert/bootstrap || { echo "make deploy: no bootstraps in $(OUT); run make package first"; exit 1; }
	@test -s $(OUT)/treemux.asl.json || { echo "make deploy: no state machine definition in $(OUT); run make package first"; exit 1; }
	cd infra && sam deploy --guided --template-file template.yaml

clean-package:
	rm -rf $(OUT) target/layer-build
