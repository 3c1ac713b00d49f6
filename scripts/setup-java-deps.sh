#!/usr/bin/env bash
# Installs what the Java tests and the Apache Kafka peer use: a JDK (17+) and Maven (Debian's
# packages when missing), then the pinned Apache Kafka artifacts (kafka-clients, kafka-tools,
# the kafka_2.13 server, kafka-streams, connect-runtime, connect-file; version in
# tests/java/pom.xml) from Maven Central into ~/.m2, where they stay cached between runs.
# Writes tests/java/target/kafka.classpath: the class path Kafka's tools and server run from.
# Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] || ! command -v mvn >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi
if [ "$(java_major)" -lt 17 ]; then
  echo "setup-java-deps: Apache Kafka 4 needs Java 17 or newer; java -version says $(java_major)" >&2
  exit 1
fi
mvn -B -q --no-transfer-progress -f tests/java/pom.xml -DskipTests test-compile
mvn -B -q --no-transfer-progress -f tests/java/pom.xml dependency:build-classpath \
  -Dmdep.includeScope=runtime -Dmdep.outputFile=target/kafka.classpath
test -s tests/java/target/kafka.classpath
