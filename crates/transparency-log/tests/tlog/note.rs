use transparency_log::{Checkpoint, Error, Hash, KeyType, SignedNote, SignerKey, VerifierKey};

// The example of golang.org/x/mod/sumdb/note (note_test.go and its package doc).
const GO_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIGNATURE: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

// The example of c2sp.org/signed-note.
const SPEC_VERIFIER: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

#[test]
fn signing_go_s_example_gives_go_s_bytes() {
    let signer = SignerKey::parse(GO_SIGNER).unwrap();
    assert_eq!(signer.verifier().to_string(), GO_VERIFIER);
    assert_eq!(signer.to_secret_text(), GO_SIGNER);
    let mut note = SignedNote::new(GO_TEXT.to_owned()).unwrap();
    note.sign(&signer).unwrap();
    assert_eq!(note.to_string(), format!("{GO_TEXT}\n{GO_SIGNATURE}"));
}

#[test]
fn published_notes_verify_and_unknown_signers_are_ignored() {
    let spec = SignedNote::parse(SPEC_NOTE).unwrap();
    assert_eq!(spec.text(), "This is an example message.\n");
    assert_eq!(
        spec.verify(&VerifierKey::parse(SPEC_VERIFIER).unwrap()),
        Ok(None)
    );

    let both = SignedNote::parse(&format!("{GO_TEXT}\n{GO_SIGNATURE}{ENOCH_SIGNATURE}")).unwrap();
    let peter = VerifierKey::parse(GO_VERIFIER).unwrap();
    let enoch = VerifierKey::parse(ENOCH_VERIFIER).unwrap();
    assert_eq!(both.verify(&peter), Ok(None));
    assert_eq!(both.verify(&enoch), Ok(None));
    assert_eq!(
        both.to_string(),
        format!("{GO_TEXT}\n{GO_SIGNATURE}{ENOCH_SIGNATURE}")
    );
    let peter_only = SignedNote::parse(&format!("{GO_TEXT}\n{GO_SIGNATURE}")).unwrap();
    assert_eq!(
        peter_only.verify(&enoch),
        Err(Error::Unsigned {
            name: "EnochRoot".into()
        })
    );
}

#[test]
fn a_changed_text_or_signature_does_not_verify() {
    let peter = VerifierKey::parse(GO_VERIFIER).unwrap();
    let changed = format!("{}\n{GO_SIGNATURE}", GO_TEXT.replace("answer", "Answer"));
    assert_eq!(
        SignedNote::parse(&changed).unwrap().verify(&peter),
        Err(Error::BadSignature {
            name: "PeterNeumann".into()
        })
    );
    let forged = format!("{GO_TEXT}\n{}", GO_SIGNATURE.replace("x08go/", "x08go+"));
    assert!(SignedNote::parse(&forged).unwrap().verify(&peter).is_err());
}

#[test]
fn mangled_keys_and_notes_are_refused() {
    for bad in [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcmQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
    }
    for bad in [
        GO_TEXT.to_owned(),
        format!("{GO_TEXT}{GO_SIGNATURE}"),
        format!("{GO_TEXT}\n{}", GO_SIGNATURE.trim_end()),
        format!("{GO_TEXT}\n{}", GO_SIGNATURE.replace('\u{2014}', "-")),
        format!("bell\u{7}\n\n{GO_SIGNATURE}"),
    ] {
        assert!(SignedNote::parse(&bad).is_err(), "{bad:?}");
    }
    assert!(SignedNote::new("no newline".into()).is_err());
    assert!(SignerKey::generate("has+plus", KeyType::Ed25519).is_err());
}

fn checkpoint() -> Checkpoint {
    Checkpoint::new("portal.example/audit", 20852163, Hash::leaf(b"root"))
}

#[test]
fn checkpoints_round_trip_and_refuse_noncanonical_text() {
    let root = Hash::leaf(b"root").to_base64();
    let text = format!("portal.example/audit\n20852163\n{root}\n");
    assert_eq!(checkpoint().to_text(), text);
    assert_eq!(Checkpoint::parse(&text), Ok(checkpoint()));
    let mut extended = checkpoint();
    extended.extensions.push("hint 7".into());
    assert_eq!(Checkpoint::parse(&extended.to_text()), Ok(extended));
    for bad in [
        format!("portal.example/audit\n020852163\n{root}\n"),
        format!("portal.example/audit\n-1\n{root}\n"),
        format!("portal.example/audit\n20852163\n{root}"),
        format!("portal.example/audit\n20852163\n{root}\n\nempty\n"),
        "portal.example/audit\n20852163\nAAAA\n".to_owned(),
        "portal.example/audit\n20852163\n".to_owned(),
        format!("\n20852163\n{root}\n"),
    ] {
        assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
    }
}

/// The log's key, a witness's key and the checkpoint signed by the one and cosigned by the other.
fn witnessed_checkpoint() -> (SignerKey, SignerKey, SignedNote) {
    let log = SignerKey::generate("portal.example/audit", KeyType::Ed25519).unwrap();
    let witness = SignerKey::generate("authority.example/witness", KeyType::CosignatureV1).unwrap();
    let mut note = checkpoint().sign(&log).unwrap();
    note.cosign(&witness, 1_795_000_000).unwrap();
    (log, witness, note)
}

#[test]
fn the_log_signs_only_its_own_origin_and_a_witness_cosigns_with_a_time() {
    let (log, witness, mut note) = witnessed_checkpoint();

    let reread = SignedNote::parse(&note.to_string()).unwrap();
    assert_eq!(Checkpoint::open(&reread, &log.verifier()), Ok(checkpoint()));
    assert_eq!(reread.verify(&witness.verifier()), Ok(Some(1_795_000_000)));
    // Reparsing the published key text gives the same key.
    let published = VerifierKey::parse(&witness.verifier().to_string()).unwrap();
    assert_eq!(published, witness.verifier());

    let other = SignerKey::generate("other.example/log", KeyType::Ed25519).unwrap();
    assert!(matches!(
        checkpoint().sign(&other),
        Err(Error::OriginMismatch { .. })
    ));
    assert!(note.cosign(&log, 1).is_err());
    assert!(note.sign(&witness).is_err());
}

#[test]
fn a_cosignature_covers_the_timestamp_and_the_whole_checkpoint() {
    let (_, witness, note) = witnessed_checkpoint();
    let text = note.to_string();
    let line = text.lines().last().unwrap();
    let (name, encoded) = line
        .trim_start_matches("\u{2014} ")
        .split_once(' ')
        .unwrap();
    use base64::Engine as _;
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(bytes.len(), 4 + 8 + 64);
    bytes[11] ^= 1; // one second later
    let moved = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let tampered = text.replace(line, &format!("\u{2014} {name} {moved}"));
    assert!(SignedNote::parse(&tampered)
        .unwrap()
        .verify(&witness.verifier())
        .is_err());
    let grown = text.replacen("\n20852163\n", "\n20852164\n", 1);
    assert!(SignedNote::parse(&grown)
        .unwrap()
        .verify(&witness.verifier())
        .is_err());
}

proptest::proptest! {
    #[test]
    fn any_signed_text_reads_back_and_verifies_and_no_other_text_does(
        lines in proptest::collection::vec("[^\\p{Cc}]{0,40}", 1..6),
        seed_line in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let key = SignerKey::generate("log.example/p", KeyType::Ed25519).unwrap();
        let mut note = SignedNote::new(text.clone()).unwrap();
        note.sign(&key).unwrap();
        let reread = SignedNote::parse(&note.to_string()).unwrap();
        proptest::prop_assert_eq!(&reread, &note);
        proptest::prop_assert_eq!(reread.verify(&key.verifier()), Ok(None));

        let mut other_lines = lines.clone();
        other_lines[seed_line.index(lines.len())].push('x');
        let other: String = other_lines.iter().map(|line| format!("{line}\n")).collect();
        let moved = note.to_string().replacen(&text, &other, 1);
        let forged = SignedNote::parse(&moved).unwrap();
        proptest::prop_assert!(forged.verify(&key.verifier()).is_err());
    }
}
