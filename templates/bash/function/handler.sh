#!/usr/bin/env bash
# The request body is on STDIN; what you print is the response.
name=$(cat)
echo "Hello, ${name:-world}, from bash! (${Http_Method:-?} ${Http_Path:-/})"
