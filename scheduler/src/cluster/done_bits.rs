//! The campaign's done bits (one per original line, numbered as Redis's `SETBIT` numbers them:
//! the most significant bit of byte 0 is line 0) as the finish script takes them: per
//! outcome, a mask over the bytes the chunk's lines cover, so that Redis handles a byte of
//! eight recipients at a time instead of one call per recipient.

/// Most bytes of bitmap one call covers (the lines of one chunk normally lie within a few
/// hundred); lines spread wider (a chunk whose rows are far apart in the file) take several.
pub(super) const MAX_SPAN: u64 = 64 * 1024;

/// The outcomes of lines lying within [`MAX_SPAN`] bytes of the bitmap.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MaskGroup {
    /// The byte of the bitmap the masks start at.
    pub first: u64,
    /// Per outcome (in the order first met), the bits of its lines from `first` on; trailing
    /// zero bytes left out.
    pub masks: Vec<(String, Vec<u8>)>,
}

/// Groups `finals` (`(line, outcome)`, any order) into masks.
pub(super) fn mask_groups(finals: &[(u64, String)]) -> Vec<MaskGroup> {
    let mut order: Vec<&(u64, String)> = finals.iter().collect();
    order.sort_by_key(|(line, _)| *line);
    let mut groups: Vec<MaskGroup> = Vec::new();
    for (line, outcome) in order {
        let byte = line / 8;
        let group = match groups.last_mut() {
            Some(g) if byte - g.first < MAX_SPAN => g,
            _ => {
                groups.push(MaskGroup {
                    first: byte,
                    masks: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        let at = (byte - group.first) as usize;
        let mask = match group.masks.iter().position(|(o, _)| o == outcome) {
            Some(i) => &mut group.masks[i].1,
            None => {
                group.masks.push((outcome.clone(), Vec::new()));
                &mut group.masks.last_mut().expect("just pushed").1
            }
        };
        if mask.len() <= at {
            mask.resize(at + 1, 0);
        }
        mask[at] |= 0x80 >> (line % 8);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finals(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
        pairs.iter().map(|(l, o)| (*l, o.to_string())).collect()
    }

    #[test]
    fn lines_become_bits_per_outcome_from_the_first_byte() {
        let groups = mask_groups(&finals(&[
            (17, "delivered"),
            (9, "bounced"),
            (8, "delivered"),
            (23, "delivered"),
        ]));
        assert_eq!(
            groups,
            vec![MaskGroup {
                first: 1,
                masks: vec![
                    // Line 8 is the top bit of byte 1; 17 and 23 are bits 1 and 7 of byte 2.
                    ("delivered".to_owned(), vec![0b1000_0000, 0b0100_0001]),
                    ("bounced".to_owned(), vec![0b0100_0000]),
                ],
            }]
        );
        assert!(mask_groups(&[]).is_empty());
    }

    #[test]
    fn lines_far_apart_take_several_groups() {
        let far = MAX_SPAN * 8;
        let groups = mask_groups(&finals(&[
            (3, "delivered"),
            (far + 2, "delivered"),
            (far - 1, "failed"),
        ]));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].first, 0);
        assert_eq!(groups[0].masks[0], ("delivered".to_owned(), vec![0b0001_0000]));
        let last = &groups[0].masks[1];
        assert_eq!((last.0.as_str(), last.1.len() as u64), ("failed", MAX_SPAN));
        assert_eq!(last.1[MAX_SPAN as usize - 1], 0b0000_0001);
        assert_eq!(
            groups[1],
            MaskGroup {
                first: MAX_SPAN,
                masks: vec![("delivered".to_owned(), vec![0b0010_0000])],
            }
        );
    }
}
