"""Infrastructure (AWS CDK) tests: synth, cdk-nag, cfn-lint and template assertions."""
