"""The taskproc domain: everything the Lambda functions need, nothing they don't."""
