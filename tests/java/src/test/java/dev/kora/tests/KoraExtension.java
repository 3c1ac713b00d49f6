package dev.kora.tests;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * One Kora for a whole test class: started before its first test, stopped after its last.
 *
 * <pre>
 * &#64;RegisterExtension
 * static final KoraExtension kora = KoraExtension.dev();
 * </pre>
 */
final class KoraExtension implements BeforeAllCallback, AfterAllCallback {
    @FunctionalInterface
    interface Starter {
        KoraProcess start() throws Exception;
    }

    private final Starter starter;
    private KoraProcess process;

    private KoraExtension(Starter starter) {
        this.starter = starter;
    }

    /** {@code kora dev} with {@code extra} arguments. */
    static KoraExtension dev(String... extra) {
        return new KoraExtension(() -> KoraProcess.dev(extra));
    }

    /** {@code kora dev --auth} with {@code extra} arguments and a KORA_CONFIG_DIR of its own. */
    static KoraExtension devAuth(String... extra) {
        return new KoraExtension(() -> KoraProcess.devAuth(extra));
    }

    /** {@code kora cell up} with {@code brokers} brokers and {@code extra} arguments. */
    static KoraExtension cell(int brokers, String... extra) {
        return new KoraExtension(() -> KoraProcess.cell(brokers, extra));
    }

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        process = starter.start();
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        if (process != null) {
            process.close();
            process = null;
        }
    }

    KoraProcess get() {
        if (process == null) {
            throw new IllegalStateException("Kora is not running (used outside the test class's lifetime?)");
        }
        return process;
    }

    String bootstrap() {
        return get().bootstrap();
    }

    JsonNode info() {
        return get().info();
    }

    String tail() {
        return get().tail();
    }

    /** The API key {@code kora dev --auth} printed: {key, secret, tenant}. */
    JsonNode apiKey() {
        return get().apiKey();
    }

    /** {@code kora --output json ARGS --admin <admin>}, which must succeed: its JSON answer. */
    JsonNode cli(String... args) throws Exception {
        return get().cli(args);
    }
}
